package pg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return store.Frame(b), nil
}

func decode(rec []byte, v any) error {
	p, err := store.Unframe(rec)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	return nil
}

// SaveLinkSession records a link session; it is kept until
// store.LinkSessionTail after its token expires.
func (db *DB) SaveLinkSession(ls store.LinkSession) error {
	if ls.Tenant == "" || ls.User == "" || ls.LinkToken == "" || strings.ContainsRune(ls.Tenant+ls.User, 0) {
		return errors.New("store: save link session: tenant, user and link token are required")
	}
	rec, err := encode(ls)
	if err != nil {
		return fmt.Errorf("store: save link session: %w", err)
	}
	exp := db.toDB(ls.Expiration.Add(store.LinkSessionTail))
	if min := db.now().Add(time.Minute); exp.Before(min) {
		exp = min
	}
	return db.op(func(ctx context.Context) error {
		// A token bound to another tenant or user is not rebound (the
		// Badger store's sameLinkOwner): the update matches no row.
		tag, err := db.pool.Exec(ctx, `INSERT INTO sc_link_sessions (hash, tenant, user_id, created_at, expires_at, rec) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (hash) DO UPDATE SET created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, rec = EXCLUDED.rec
			WHERE sc_link_sessions.tenant = EXCLUDED.tenant AND sc_link_sessions.user_id = EXCLUDED.user_id`,
			store.LinkTokenHash(ls.LinkToken), ls.Tenant, ls.User, ls.CreatedAt, exp, rec)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: link token is bound to another user", store.ErrDuplicate)
		}
		return err
	})
}

// LinkSessionByToken finds the live session of a link token, whoever owns it.
func (db *DB) LinkSessionByToken(linkToken string) (store.LinkSession, error) {
	var ls store.LinkSession
	err := db.op(func(ctx context.Context) error {
		var rec []byte
		if err := db.pool.QueryRow(ctx, "SELECT rec FROM sc_link_sessions WHERE hash = $1 AND expires_at > $2",
			store.LinkTokenHash(linkToken), db.now()).Scan(&rec); err != nil {
			return err
		}
		return openLinkSession(store.LinkTokenHash(linkToken), rec, &ls)
	})
	return ls, err
}

// openLinkSession decodes the row stored under hash h and refuses
// (ErrCorrupt) one whose token does not hash to h, as Badger's does.
func openLinkSession(h string, rec []byte, ls *store.LinkSession) error {
	if err := decode(rec, ls); err != nil {
		return err
	}
	if store.LinkTokenHash(ls.LinkToken) != h {
		return fmt.Errorf("store: link session %s: stored under another token: %w", h, store.ErrCorrupt)
	}
	return nil
}

// LinkSessions lists a user's live link sessions, newest first, at most max.
func (db *DB) LinkSessions(tenant, user string, max int) ([]store.LinkSession, error) {
	out, err := records[store.LinkSession](db, `SELECT rec FROM sc_link_sessions WHERE tenant = $1 AND user_id = $2 AND expires_at > $3
			ORDER BY created_at DESC, hash LIMIT $4`, tenant, user, db.now(), max)
	for _, ls := range out {
		if ls.Tenant != tenant || ls.User != user { // a row whose columns name someone else than its record
			return nil, fmt.Errorf("store: link sessions of %s: a row lists another user's session: %w", tenant, store.ErrCorrupt)
		}
	}
	return out, err
}

// BeginExchange records an intent and returns it with its id set.
func (db *DB) BeginExchange(in store.Intent) (store.Intent, error) {
	if in.Tenant == "" || in.User == "" {
		return in, errors.New("store: begin exchange: tenant and user are required")
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = db.local().UTC()
	}
	in.ID = db.nextID(in.CreatedAt)
	rec, err := encode(in)
	if err != nil {
		return in, fmt.Errorf("store: begin exchange: %w", err)
	}
	return in, db.op(func(ctx context.Context) error {
		_, err := db.pool.Exec(ctx, "INSERT INTO sc_intents (id, rec) VALUES ($1, $2)", in.ID, rec)
		return err
	})
}

// ResolveExchange deletes an intent whose outcome is known.
func (db *DB) ResolveExchange(id string) error {
	return db.op(func(ctx context.Context) error {
		_, err := db.pool.Exec(ctx, "DELETE FROM sc_intents WHERE id = $1", id)
		return err
	})
}

// PendingExchanges lists unresolved intents, oldest first.
func (db *DB) PendingExchanges() ([]store.Intent, error) {
	return records[store.Intent](db, "SELECT rec FROM sc_intents ORDER BY id")
}

func orphanKey(o store.Orphan) string {
	if o.ItemID != "" {
		return o.ItemID
	}
	return "intent:" + o.IntentID
}

// OrphanIntent turns an unresolved intent into a lost_exchange orphan in
// one transaction.
func (db *DB) OrphanIntent(in store.Intent, itemID, detail string) error {
	o := store.Orphan{
		Kind: store.OrphanLostExchange, Tenant: in.Tenant, User: in.User, ItemID: itemID, LinkTokenHash: in.LinkTokenHash,
		IntentID: in.ID, Detail: detail, FirstSeen: in.CreatedAt, LastSeen: db.local().UTC(), Count: 1,
	}
	rec, err := encode(o)
	if err != nil {
		return err
	}
	return db.tx(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sc_orphans (tenant, key, first_seen, rec) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant, key) DO UPDATE SET first_seen = EXCLUDED.first_seen, rec = EXCLUDED.rec`,
			o.Tenant, orphanKey(o), o.FirstSeen, rec); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM sc_intents WHERE id = $1", in.ID)
		return err
	})
}

// RecordOrphan records an orphan once per tenant and item (or intent) and
// reports whether it is new.
func (db *DB) RecordOrphan(o store.Orphan) (bool, error) {
	if o.Tenant == "" || (o.ItemID == "" && o.IntentID == "") || strings.ContainsRune(o.Tenant+o.ItemID, 0) {
		return false, errors.New("store: record orphan: tenant and item_id or intent_id are required")
	}
	now := db.local().UTC()
	o.FirstSeen, o.LastSeen, o.Count = now, now, 1
	rec, err := encode(o)
	if err != nil {
		return false, err
	}
	key := orphanKey(o)
	n, err := db.write("o\x00"+o.Tenant+"\x00"+key, // group-committed (writes.go)
		"INSERT INTO sc_orphans (tenant, key, first_seen, rec) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		o.Tenant, key, o.FirstSeen, rec)
	return n == 1, err
}

// Orphans lists every recorded orphan, oldest first.
func (db *DB) Orphans() ([]store.Orphan, error) {
	return records[store.Orphan](db, "SELECT rec FROM sc_orphans ORDER BY first_seen, tenant, key")
}

// ForgetOrphan removes an orphan the admin has dealt with; ErrNotFound when
// tenant has no orphan with that item or intent id.
func (db *DB) ForgetOrphan(tenant, itemOrIntent string) error {
	return db.op(func(ctx context.Context) error {
		tag, err := db.pool.Exec(ctx, "DELETE FROM sc_orphans WHERE tenant = $1 AND key IN ($2, $3)", tenant, itemOrIntent, "intent:"+itemOrIntent)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: orphan %s/%s", store.ErrNotFound, tenant, itemOrIntent)
		}
		return err
	})
}

// ProbeStore writes a random value and reads it back: nil means the
// database takes writes now. It is what /readyz calls.
func (db *DB) ProbeStore() error {
	var v [16]byte
	if _, err := rand.Read(v[:]); err != nil {
		return fmt.Errorf("store: probe: %w", err)
	}
	return db.op(func(ctx context.Context) error {
		var got []byte
		if err := db.pool.QueryRow(ctx, "INSERT INTO sc_probe (id, v) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v RETURNING v", v[:]).Scan(&got); err != nil {
			return fmt.Errorf("store: probe: %w", mapErr(err))
		}
		if !bytes.Equal(got, v[:]) {
			return errors.New("store: probe read back a different value")
		}
		return nil
	})
}

// ProbeKey seals and opens a probe under the primary key.
func (db *DB) ProbeKey() error {
	if db.keyErr != nil {
		return db.keyErr
	}
	return db.kr.Probe()
}

// records runs query, whose one column is a record, and decodes every row
// into a T. A retried attempt starts from an empty list.
func records[T any](db *DB, query string, args ...any) ([]T, error) {
	var out []T
	err := db.op(func(ctx context.Context) error {
		out = out[:0]
		rows, err := db.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		recs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			return err
		}
		for _, rec := range recs {
			var v T
			if err := decode(rec, &v); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}
