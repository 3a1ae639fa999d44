package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

// Import writes r unless a record with its kind and key exists (so a
// migration can run again); it reports whether it wrote. Records keep their
// bytes: tokens stay sealed, MACs stay valid.
func (db *DB) Import(r store.Record) (bool, error) {
	var sql string
	var args []any
	switch r.Kind {
	case store.RecCanary:
		sql, args = "INSERT INTO sc_keys (id, canary) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET canary = EXCLUDED.canary WHERE sc_keys.canary IS NULL", []any{r.Key, r.Value}
	case store.RecKeyUsed:
		sql, args = "INSERT INTO sc_keys (id, used) VALUES ($1, true) ON CONFLICT (id) DO UPDATE SET used = true WHERE NOT sc_keys.used", []any{r.Key}
	case store.RecItem:
		var it store.Item
		if err := json.Unmarshal(store.AuthenticatedPayload(r.Value), &it); err != nil {
			return false, fmt.Errorf("%w: item %q", store.ErrCorrupt, r.Key)
		}
		sql, args = "INSERT INTO sc_items (tenant, item_id, user_id, created_at, rec) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
			[]any{it.Tenant, it.ItemID, it.User, it.CreatedAt, r.Value}
	case store.RecOwner:
		sql, args = "INSERT INTO sc_owners (item_id, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING", []any{r.Key, r.Value}
	case store.RecLink:
		var ls store.LinkSession
		if err := decode(r.Value, &ls); err != nil {
			return false, err
		}
		exp := db.toDB(r.ExpiresAt)
		if exp.IsZero() {
			exp = db.toDB(ls.Expiration.Add(store.LinkSessionTail))
		}
		sql, args = "INSERT INTO sc_link_sessions (hash, tenant, user_id, created_at, expires_at, rec) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
			[]any{r.Key, ls.Tenant, ls.User, ls.CreatedAt, exp, r.Value}
	case store.RecIntent:
		sql, args = "INSERT INTO sc_intents (id, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING", []any{r.Key, r.Value}
	case store.RecOrphan:
		var o store.Orphan
		if err := decode(r.Value, &o); err != nil {
			return false, err
		}
		_, key, _ := strings.Cut(r.Key, "\x00")
		sql, args = "INSERT INTO sc_orphans (tenant, key, first_seen, rec) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			[]any{o.Tenant, key, o.FirstSeen, r.Value}
	case store.RecQueue, store.RecDead:
		// The record goes in as it came: an unauthenticated one is not
		// vouched for by moving it (store/entry_auth.go).
		e, _, err := db.kr.ReadEntry(r.Key, r.Value)
		if errors.Is(err, store.ErrCorrupt) && r.Key != "" {
			// A damaged record is kept as a dead letter, as it is (its
			// tenant unknown): the copy is not refused for it.
			sql = `INSERT INTO sc_queue (id, tenant, rec, next_at, last_error, dead)
				VALUES ($1, '', $2, now(), $3, true) ON CONFLICT DO NOTHING`
			args = []any{r.Key, r.Value, store.DamagedReason + err.Error()}
			break
		}
		if err != nil {
			return false, err
		}
		var until *time.Time
		if !e.LeaseUntil.IsZero() {
			u := db.toDB(e.LeaseUntil)
			until = &u
		}
		sql = `INSERT INTO sc_queue (id, tenant, rec, attempts, next_at, last_error, lease_token, lease_owner, lease_until, dead)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`
		args = []any{e.ID, e.Tenant, r.Value, e.Attempts, db.toDB(e.NextAt), e.LastError, int64(e.LeaseToken & (1<<63 - 1)), e.LeaseOwner, until, r.Kind == store.RecDead}
	case store.RecKV:
		// Like the Badger store, the import takes every entry whatever the
		// tenant's quota (see store.(*DB).importKV for why); the quota here
		// is a COUNT, so a tenant above it has new keys refused until it is
		// back under.
		tenant, key, ok := strings.Cut(r.Key, "\x00")
		if !ok || tenant == "" || key == "" {
			return false, fmt.Errorf("store: kv import: %w", store.ErrInvalidKey)
		}
		var exp *time.Time
		if !r.ExpiresAt.IsZero() {
			e := db.toDB(r.ExpiresAt)
			if !db.now().Before(e) {
				return false, nil // expired: nothing to move
			}
			exp = &e
		}
		val := r.Value
		if val == nil {
			val = []byte{} // value is NOT NULL; an empty value is a value
		}
		sql = `INSERT INTO plugin_kv (tenant, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant, key) DO NOTHING`
		args = []any{tenant, []byte(key), val, exp, db.now()}
	default:
		return false, nil
	}
	var n int64
	err := db.op(func(ctx context.Context) error {
		tag, err := db.pool.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n == 1, err
}

// Marked reports whether the database holds the store.MigrateMark record.
func (db *DB) Marked() (bool, error) {
	var found bool
	err := db.op(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM sc_keys WHERE id = $1 AND used)", store.MigrateMark).Scan(&found)
	})
	return found, err
}

// Unmark removes the store.MigrateMark record.
func (db *DB) Unmark() error {
	return db.op(func(ctx context.Context) error {
		_, err := db.pool.Exec(ctx, "DELETE FROM sc_keys WHERE id = $1", store.MigrateMark)
		return err
	})
}

// Holds reports whether the database holds data Export would move: any
// record but the keys' (store.(*DB).Holds).
func (db *DB) Holds() (bool, error) {
	var held bool
	err := db.op(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sc_items) OR EXISTS (SELECT 1 FROM sc_owners)
			OR EXISTS (SELECT 1 FROM sc_link_sessions) OR EXISTS (SELECT 1 FROM sc_intents)
			OR EXISTS (SELECT 1 FROM sc_orphans) OR EXISTS (SELECT 1 FROM sc_queue)
			OR EXISTS (SELECT 1 FROM plugin_kv WHERE expires_at IS NULL OR expires_at > $1)`, db.now()).Scan(&held)
	})
	return held, err
}

// Export calls fn with every record that defines the store's state, in the
// form store.(*DB).Import takes. Expired plugin KV entries are left behind.
//
// Every table is read in one REPEATABLE READ, read-only transaction, so
// the records are one snapshot even with replicas writing meanwhile: no
// item without its owner record, no queue entry from after the others.
// Each query is bounded as an op is; fn is called between queries, a table
// at a time, with the transaction open.
func (db *DB) Export(fn func(store.Record) error) (err error) {
	var tx pgx.Tx
	if err := db.op(func(ctx context.Context) error {
		var err error
		tx, err = db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		// fn writes each table out while the transaction waits, idle: a
		// server's idle_in_transaction_session_timeout must not cut a
		// large copy off half-way.
		if _, err = tx.Exec(ctx, "SET LOCAL idle_in_transaction_session_timeout = 0"); err != nil {
			_ = tx.Rollback(ctx)
		}
		return err
	}); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		// Not through op, which refuses once Close has begun: Close waits
		// for this connection to come back to the pool.
		ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
		defer cancel()
		if rerr := tx.Rollback(ctx); rerr != nil {
			err = errors.Join(err, mapErr(rerr))
		}
	}()
	type q struct {
		sql  string
		conv func(row pgx.Rows) (store.Record, error)
	}
	bytesRow := func(kind string) func(pgx.Rows) (store.Record, error) {
		return func(row pgx.Rows) (store.Record, error) {
			r := store.Record{Kind: kind}
			err := row.Scan(&r.Key, &r.Value)
			return r, err
		}
	}
	pairRow := func(kind string) func(pgx.Rows) (store.Record, error) {
		return func(row pgx.Rows) (store.Record, error) {
			r := store.Record{Kind: kind}
			var a, b string
			err := row.Scan(&a, &b, &r.Value)
			r.Key = a + "\x00" + b
			return r, err
		}
	}
	qs := []q{
		{"SELECT id, canary FROM sc_keys WHERE canary IS NOT NULL", bytesRow(store.RecCanary)},
		{"SELECT id, ''::bytea FROM sc_keys WHERE used", bytesRow(store.RecKeyUsed)},
		{"SELECT tenant, item_id, rec FROM sc_items", pairRow(store.RecItem)},
		{"SELECT item_id, rec FROM sc_owners", bytesRow(store.RecOwner)},
		{"SELECT hash, rec, expires_at FROM sc_link_sessions", func(row pgx.Rows) (store.Record, error) {
			r := store.Record{Kind: store.RecLink}
			err := row.Scan(&r.Key, &r.Value, &r.ExpiresAt)
			r.ExpiresAt = db.fromDB(r.ExpiresAt)
			return r, err
		}},
		{"SELECT id, rec FROM sc_intents", bytesRow(store.RecIntent)},
		{"SELECT tenant, key, rec FROM sc_orphans", pairRow(store.RecOrphan)},
		{"SELECT dead, rec, " + entryCols + " FROM sc_queue", func(row pgx.Rows) (store.Record, error) {
			var dead bool
			var raw []byte
			e, a, kid, err := db.scanEntry(row, &dead, &raw)
			if errors.Is(err, store.ErrCorrupt) && e.ID != "" {
				// A damaged record is carried as a dead letter, as it is:
				// the copy is not refused for it, and it stays for an
				// operator to see (webhooks list shows it as damaged).
				return store.Record{Kind: store.RecDead, Key: e.ID, Value: raw}, nil
			}
			if err != nil {
				return store.Record{}, err
			}
			// The record carries the columns now, so it is encoded again,
			// authenticated only if it was (store/entry_auth.go); one with
			// a MAC this side cannot check or authenticate again rightly
			// (no keyring, a key it lacks, a primary that does not match
			// the data) goes as it is stored, its MAC kept (the columns it
			// cannot carry are lost: attempts, due time, last error).
			var b []byte
			switch {
			case a == store.Authenticated && !db.qg.PrimaryBad():
				b, err = db.kr.SealEntry(e)
			case kid != "":
				b = raw
			default:
				b, err = store.EncodeEntry(e)
			}
			kind := store.RecQueue
			if dead {
				kind = store.RecDead
			}
			return store.Record{Kind: kind, Key: e.ID, Value: b}, err
		}},
	}
	kvConv := func(row pgx.Rows) (store.Record, error) {
		r := store.Record{Kind: store.RecKV}
		var tenant string
		var key []byte
		var exp *time.Time
		err := row.Scan(&tenant, &key, &r.Value, &exp)
		r.Key = tenant + "\x00" + string(key)
		if exp != nil {
			r.ExpiresAt = db.fromDB(*exp)
		}
		return r, err
	}
	each := func(x q, args ...any) error {
		var recs []store.Record
		err := db.op(func(ctx context.Context) error {
			rows, err := tx.Query(ctx, x.sql, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				r, err := x.conv(rows)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, x := range qs {
		if err := each(x); err != nil {
			return err
		}
		if db.afterExportTable != nil {
			db.afterExportTable(x.sql)
		}
	}
	if err := each(q{"SELECT tenant, key, value, expires_at FROM plugin_kv WHERE expires_at IS NULL OR expires_at > $1", kvConv}, db.now()); err != nil {
		return err
	}
	return db.op(func(ctx context.Context) error { return tx.Commit(ctx) })
}
