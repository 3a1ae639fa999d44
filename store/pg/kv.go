package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/safeclose/safeclose/store"
)

// The plugin key/value store (hostabi.KVStore) in plugin_kv, shared by
// every replica. A new key takes a transaction-scoped advisory lock on its
// tenant, so two replicas cannot both take the last free entry; updates of
// an existing key need no lock. Within a replica a tenant's new keys take
// turns (kvLocks) before they take a connection.

// kvLockKey is the advisory lock key of tenant $1's KV namespace, and
// kvLock takes it for the transaction.
const (
	kvLockKey = "hashtextextended('safeclose/plugin_kv/' || $1, 0)"
	kvLock    = "SELECT pg_advisory_xact_lock(" + kvLockKey + ")"
)

// kvUpdate rewrites an existing key of tenant $1: key $2, value $3,
// expiry $4, at $5.
const kvUpdate = "UPDATE plugin_kv SET value = $3, expires_at = $4, updated_at = $5 WHERE tenant = $1 AND key = $2"

// execer is what runs kvUpdate: the pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func kvCheck(tenant string, key []byte) error {
	if tenant == "" || len(key) == 0 {
		return store.ErrInvalidKey
	}
	return nil
}

// opCtx is op bounded by ctx as well as by the operation timeout.
func (db *DB) opCtx(ctx context.Context, fn func(ctx context.Context) error) error {
	err := db.op(func(octx context.Context) error {
		octx, cancel := context.WithCancel(octx)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		return fn(octx)
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", err, ctx.Err())
	}
	return err
}

// KVGet returns key's value in tenant's namespace; found is false when it
// is absent or expired.
func (db *DB) KVGet(ctx context.Context, tenant string, key []byte) (val []byte, found bool, err error) {
	if err := kvCheck(tenant, key); err != nil {
		return nil, false, err
	}
	now := db.now()
	err = db.opCtx(ctx, func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT value FROM plugin_kv WHERE tenant = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
			tenant, key, now).Scan(&val)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: kv get: %w", err)
	}
	return val, true, nil
}

// KVSet stores val under key in tenant's namespace, expiring after ttl
// (zero: never). A new key when the tenant holds maxEntries unexpired
// entries is refused (stored false, nothing written).
func (db *DB) KVSet(ctx context.Context, tenant string, key, val []byte, ttl time.Duration, maxEntries int) (stored bool, err error) {
	if err := kvCheck(tenant, key); err != nil {
		return false, err
	}
	now := db.now()
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	// rewrite sets the key if it exists: an existing key (even expired)
	// takes no more room.
	rewrite := func(ctx context.Context, q execer) error {
		tag, err := q.Exec(ctx, kvUpdate, tenant, key, val, exp, now)
		stored = err == nil && tag.RowsAffected() == 1
		return err
	}
	// So first one statement, no lock, as many at once as the pool allows.
	err = db.opCtx(ctx, func(ctx context.Context) error { return rewrite(ctx, db.pool) })
	if err != nil || stored {
		return stored, kvSetErr(err)
	}
	// A new key takes the tenant's advisory lock to check the quota. Its
	// writes take turns in this replica first, before a pooled connection
	// (store.TenantLocks): the advisory lock is waited for holding one, and
	// a tenant adding keys without pause held the whole pool that way, so
	// every other tenant's KV calls ran past their deadline.
	unlock, err := db.kvLocks.Lock(ctx, tenant)
	if err != nil {
		return false, kvSetErr(err)
	}
	defer unlock()
	err = db.opCtx(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			stored = false
			if _, err := tx.Exec(ctx, kvLock, tenant); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM plugin_kv WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2)",
				tenant, now).Scan(&n); err != nil {
				return err
			}
			if n >= maxEntries {
				// Refused, unless the key was written since the update
				// above found none: then it takes no more room either.
				return rewrite(ctx, tx)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO plugin_kv (tenant, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (tenant, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at`,
				tenant, key, val, exp, now); err != nil {
				return err
			}
			stored = true
			return nil
		})
	})
	return stored, kvSetErr(err)
}

// kvSetErr is err, if any, as KVSet reports it.
func kvSetErr(err error) error {
	if err != nil {
		return fmt.Errorf("store: kv set: %w", err)
	}
	return nil
}

// KVDelete removes key from tenant's namespace; an absent key is not an error.
func (db *DB) KVDelete(ctx context.Context, tenant string, key []byte) error {
	if err := kvCheck(tenant, key); err != nil {
		return err
	}
	err := db.opCtx(ctx, func(ctx context.Context) error {
		_, err := db.pool.Exec(ctx, "DELETE FROM plugin_kv WHERE tenant = $1 AND key = $2", tenant, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: kv delete: %w", err)
	}
	return nil
}
