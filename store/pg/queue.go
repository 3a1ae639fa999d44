package pg

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

// The queue: sc_queue holds each entry's framed record (the fields that
// never change) and the fields that do in columns; a dead letter is an
// entry with dead set. Every lease operation is one statement guarded by
// the lease token, so a lease that expired and went to another replica is
// store.ErrStaleLease for the first holder.

const entryCols = "id, tenant, rec, attempts, next_at, last_error, lease_token, lease_owner, lease_until"

// scanEntry reads entryCols into an Entry, its times in the caller's clock;
// lead receives columns selected before them (export's "dead"). The record
// is read whatever its authentication (store.Keyring.ReadEntry), which a
// says; kid is the key its MAC names. A record that does not decode is
// store.ErrCorrupt, with the row's id and tenant in e.
func (db *DB) scanEntry(row pgx.Row, lead ...any) (e store.Entry, a store.Auth, kid string, err error) {
	var id, tenant string
	var rec []byte
	var attempts int
	var next time.Time
	var lastErr, owner string
	var token int64
	var until *time.Time
	if err := row.Scan(append(lead, &id, &tenant, &rec, &attempts, &next, &lastErr, &token, &owner, &until)...); err != nil {
		return store.Entry{}, a, "", err
	}
	kid = store.EntryKeyID(rec)
	e, a, err = db.kr.ReadEntry(id, rec)
	if err != nil {
		return store.Entry{ID: id, Tenant: tenant}, a, kid, fmt.Errorf("%w: %w", store.ErrCorrupt, err)
	}
	e.Attempts, e.NextAt, e.LastError, e.LeaseToken, e.LeaseOwner = attempts, db.fromDB(next), lastErr, uint64(token), owner
	e.LeaseUntil = time.Time{}
	if until != nil {
		e.LeaseUntil = db.fromDB(*until)
	}
	e.Authenticated = a == store.Authenticated
	return e, a, kid, nil
}

func newLeaseToken() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:])>>1) | 1 // positive, never 0
}

const due = "NOT dead AND next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"

// dueTenants lists the tenants with a due entry by a loose index scan of
// sc_queue_due (tenant, id): each step seeks to the next tenant and stops at
// its first due entry, so the cost follows the number of tenants, not of
// queued entries (SELECT DISTINCT read every queued row: 48 ms a lease with
// 100,000 queued against 0.9 ms with 10; issue 12).
const dueTenants = `WITH RECURSIVE t(tenant) AS (
	(SELECT tenant FROM sc_queue WHERE ` + due + ` ORDER BY tenant LIMIT 1)
	UNION ALL
	SELECT (SELECT q.tenant FROM sc_queue q WHERE q.tenant > t.tenant AND ` + due + ` ORDER BY q.tenant LIMIT 1)
	FROM t WHERE t.tenant IS NOT NULL
) SELECT tenant FROM t WHERE tenant IS NOT NULL`

// dueFresh bounds how long LeaseNext trusts its list of tenants with a due
// entry before reading it again.
const dueFresh = 50 * time.Millisecond

// dueList is LeaseNext's list of the tenants with a due entry (issue 11): a
// lease used to read it (dueTenants) before every lease UPDATE, two round
// trips a lease, both walking the front of sc_queue_due. It is read again
// when it is older than dueFresh, when a lease on one of its tenants finds
// nothing, when this replica enqueues for a tenant not on it, and when it
// gives an entry back (Release, Replay); LeaseNext answers "nothing due"
// only from a list just read. So a tenant that gets due entries some other
// way (another replica's enqueue, a retry time passing, a lease ending)
// joins the turns at most dueFresh late, and nothing due is ever missed.
type dueList struct {
	mu    sync.Mutex
	names []string  // sorted
	at    time.Time // when read; zero means read it again
	gen   uint64    // counts stale calls, so a read they overlap is not trusted
}

// stale makes the next lease read the list again.
func (l *dueList) stale() {
	l.mu.Lock()
	l.at = time.Time{}
	l.gen++
	l.mu.Unlock()
}

// noteDue makes the next lease read the list again if tenant is not on it:
// tenant may have a due entry now.
func (l *dueList) noteDue(tenant string) {
	l.mu.Lock()
	if _, on := slices.BinarySearch(l.names, tenant); !on {
		l.at = time.Time{}
		l.gen++
	}
	l.mu.Unlock()
}

// dueNames returns the due list, read again if it is not fresh or reread
// is set, and whether it was just read.
func (db *DB) dueNames(ctx context.Context, now time.Time, reread bool) ([]string, bool, error) {
	l := &db.due
	l.mu.Lock()
	if !reread && !l.at.IsZero() && time.Since(l.at) < dueFresh {
		names := l.names
		l.mu.Unlock()
		return names, false, nil
	}
	gen := l.gen
	l.mu.Unlock()
	at := time.Now()
	rows, err := db.pool.Query(ctx, dueTenants, now)
	if err != nil {
		return nil, false, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, err
	}
	slices.Sort(names)
	l.mu.Lock()
	if l.gen == gen {
		l.names, l.at = names, at
	}
	l.mu.Unlock()
	return names, true, nil
}

// LeaseNext leases one due entry to owner for d, with tenants taking turns
// as in the Badger store: among the tenants with a due entry that allow
// accepts, the first whose name sorts after after (wrapping around) gets
// its oldest due entry. Rows another replica is leasing right now are
// skipped (FOR UPDATE SKIP LOCKED), so two leasers never get one entry.
// The tenants come from dueList, so a lease is one statement while they
// have entries due, and that statement shares its commit with the outcomes
// being written (writes.go).
func (db *DB) LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (e store.Entry, ok bool, err error) {
	now := db.now()
	for _, reread := range []bool{false, true} {
		var tenants []string
		var read bool
		err := db.op(func(ctx context.Context) (err error) {
			tenants, read, err = db.dueNames(ctx, now, reread)
			return err
		})
		if err != nil {
			return store.Entry{}, false, err
		}
		if ok, err = db.leaseFrom(&e, tenants, owner, d, now, after, allow); err != nil {
			return store.Entry{}, false, err
		}
		if ok || read {
			return e, ok, nil
		}
	}
	return store.Entry{}, false, nil
}

// leaseSQL leases tenant $2's oldest due entry at $1 with token $3 to
// owner $4 until $5, skipping rows another transaction is leasing.
const leaseSQL = `UPDATE sc_queue SET lease_token = $3, lease_owner = $4, lease_until = $5
	WHERE id = (SELECT id FROM sc_queue WHERE tenant = $2 AND ` + due + ` ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
	RETURNING ` + entryCols

// leaseFrom leases the oldest due entry of the first of tenants (sorted) in
// turn after after that allow accepts and that has one. allow is asked
// about each tenant just before its lease is tried, not about all of them
// first: the caller's allow may take a slot of the tenant it accepts
// (proxy/webhook_worker.go), and should not for tenants never tried. The
// lease UPDATE is group-committed with the outcomes being written
// (writes.go): it is committed before leaseFrom returns, and shares its
// commit with them.
func (db *DB) leaseFrom(e *store.Entry, tenants []string, owner string, d time.Duration, now time.Time, after string, allow func(string) bool) (bool, error) {
	start, _ := slices.BinarySearch(tenants, after)
	if start < len(tenants) && tenants[start] == after {
		start++
	}
	for k := range tenants {
		t := tenants[(start+k)%len(tenants)]
		if allow != nil && !allow(t) {
			continue
		}
		ok, err := db.leaseOne(e, t, owner, d, now)
		if ok || err != nil {
			return ok, err
		}
		db.due.stale() // t has nothing due now: the list is out of date
	}
	return false, nil
}

// leaseOne leases tenant t's oldest due entry into e; ok is false when t
// has none. A record that cannot be delivered is dealt with
// (store/entry_auth.go): one no keyring key authenticated becomes a dead
// letter an operator can check and replay, and a damaged one a dead letter
// too (Badger moves it aside), so it does not come back at every lease's
// end, and t's next entry is leased instead; one that cannot be checked
// here is held (due again after store.HoldFor), and the call ends there for
// t: a replica without a key, mid-rotation, then holds one entry a call,
// not all of t's, and leaves the rest to the replicas that have it.
func (db *DB) leaseOne(e *store.Entry, t, owner string, d time.Duration, now time.Time) (ok bool, err error) {
	for {
		var got store.Entry
		var a store.Auth
		var kid string
		var bad error
		token := newLeaseToken()
		found, err := db.writeRow("", func(row pgx.Row) error {
			got, a, kid, bad = db.scanEntry(row)
			if bad != nil && got.ID == "" {
				return bad // the row did not scan
			}
			return nil
		}, leaseSQL, now, t, token, owner, now.Add(d))
		if err != nil || !found {
			return false, err
		}
		var sql string
		var args []any
		switch {
		case bad != nil:
			db.log.Error("store: damaged webhook queue record: not delivered, moved to the dead letters", "id", got.ID, "tenant", got.Tenant, "err", bad)
			sql, args = `UPDATE sc_queue SET dead = true, last_error = $3,
				lease_token = 0, lease_owner = '', lease_until = NULL WHERE `+held, []any{got.ID, token, store.DamagedReason + bad.Error()}
		case db.qg.Disposition(a, kid) == store.Deliver:
			*e = got
			return true, nil
		case db.qg.Disposition(a, kid) == store.Hold:
			db.qg.Held(db.log, got.ID, got.Tenant, db.keyErr, now)
			return false, db.leased(got.ID, `UPDATE sc_queue SET next_at = $3,
				lease_token = 0, lease_owner = '', lease_until = NULL WHERE `+held, got.ID, token, now.Add(store.HoldFor))
		default:
			store.LogDeadUnauthenticated(db.log, got.ID, got.Tenant)
			sql, args = `UPDATE sc_queue SET dead = true, last_error = $3,
				lease_token = 0, lease_owner = '', lease_until = NULL WHERE `+held, []any{got.ID, token, store.UnauthenticatedReason}
		}
		if err := db.leased(got.ID, sql, args...); err != nil {
			return false, err
		}
	}
}

// leased runs one statement on a leased entry, group-committed (writes.go);
// no row means the lease is no longer held.
func (db *DB) leased(id string, sql string, args ...any) error {
	n, err := db.write("q\x00"+id, sql, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", store.ErrStaleLease, id)
	}
	return nil
}

const held = "id = $1 AND lease_token = $2 AND lease_token <> 0 AND NOT dead"

// Extend renews a held lease to now+d.
func (db *DB) Extend(id string, lease uint64, d time.Duration) error {
	return db.leased(id, "UPDATE sc_queue SET lease_until = $3 WHERE "+held, id, int64(lease), db.now().Add(d))
}

// Release gives a leased entry back without counting an attempt.
func (db *DB) Release(id string, lease uint64) error {
	defer db.due.stale() // its tenant may not be on the due list
	return db.leased(id, "UPDATE sc_queue SET lease_token = 0, lease_owner = '', lease_until = NULL WHERE "+held, id, int64(lease))
}

// Complete removes a processed entry from the queue.
func (db *DB) Complete(id string, lease uint64) error {
	return db.leased(id, "DELETE FROM sc_queue WHERE "+held, id, int64(lease))
}

// Retry releases the lease, counts the attempt, and makes the entry due at
// next (a time of Options.Now's clock).
func (db *DB) Retry(id string, lease uint64, next time.Time, reason string) error {
	return db.leased(id, `UPDATE sc_queue SET attempts = attempts + 1, next_at = $3, last_error = $4,
		lease_token = 0, lease_owner = '', lease_until = NULL WHERE `+held, id, int64(lease), db.toDB(next), reason)
}

// DeadLetter moves a leased entry to the dead letters.
func (db *DB) DeadLetter(id string, lease uint64, reason string) error {
	return db.leased(id, `UPDATE sc_queue SET dead = true, attempts = attempts + 1, last_error = $3,
		lease_token = 0, lease_owner = '', lease_until = NULL WHERE `+held, id, int64(lease), reason)
}

// DeadLetters lists up to limit dead letters, oldest first.
func (db *DB) DeadLetters(limit int) ([]store.Entry, error) {
	var out []store.Entry
	err := db.op(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, "SELECT "+entryCols+" FROM sc_queue WHERE dead ORDER BY id LIMIT $1", limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, _, _, err := db.scanEntry(rows)
			if err != nil && e.ID == "" {
				return err
			}
			if err != nil { // listed, so that it can be seen; a replay refuses it
				e.LastError = store.DamagedReason + err.Error()
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// Replay moves a dead letter back to the queue with its attempts reset.
func (db *DB) Replay(id string, vouch bool) error {
	defer db.due.stale() // its tenant may not be on the due list
	return db.tx(func(ctx context.Context, tx pgx.Tx) error {
		var rec []byte
		err := tx.QueryRow(ctx, "SELECT rec FROM sc_queue WHERE id = $1 AND dead FOR UPDATE", id).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: dead letter %s", store.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if rec, _, err = db.qg.ReplayRecord(id, rec, vouch, db.now()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE sc_queue SET dead = false, attempts = 0, next_at = $2, rec = $3 WHERE id = $1", id, db.now(), rec)
		return err
	})
}

// QueueLen counts entries waiting or leased.
func (db *DB) QueueLen() (int, error) {
	var n int
	err := db.op(func(ctx context.Context) error {
		return db.pool.QueryRow(ctx, "SELECT count(*) FROM sc_queue WHERE NOT dead").Scan(&n)
	})
	return n, err
}

// Sweep deletes expired dedupe markers, Link sessions and plugin KV entries; serve runs it
// now and then. Expired rows are already ignored, so it only saves space.
func (db *DB) Sweep() error {
	now := db.now()
	return db.op(func(ctx context.Context) error {
		if _, err := db.pool.Exec(ctx, "DELETE FROM sc_dedupe WHERE expires_at <= $1", now); err != nil {
			return err
		}
		if _, err := db.pool.Exec(ctx, "DELETE FROM plugin_kv WHERE expires_at <= $1", now); err != nil {
			return err
		}
		_, err := db.pool.Exec(ctx, "DELETE FROM sc_link_sessions WHERE expires_at <= $1", now)
		return err
	})
}
