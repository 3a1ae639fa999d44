package pg

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

// Webhook intake with group commit, as the Badger store does it
// (store/queue.go): concurrent Enqueue calls are gathered into one
// transaction (their dedupe markers and queue rows inserted by one
// statement each), and every caller is answered after COMMIT, so a
// commit's WAL flush is paid once per batch instead of once per webhook.
// synchronous_commit is left as the server has it (on by default): an
// acknowledged webhook is as durable as PostgreSQL makes a commit.
// One committer, as in the Badger store: the next batch fills while one
// commits. (Two or more committers made smaller batches and measured
// slower on a small machine, where PostgreSQL's CPU is the limit.)

// maxBatch caps how many enqueues share a transaction.
const maxBatch = 256

type enqueueReq struct {
	ctx  context.Context
	e    store.Entry
	done chan enqueueRes
}

type enqueueRes struct {
	id  string
	dup bool
	err error
}

// startCommitters starts n group-commit goroutines; Close stops them.
func (db *DB) startCommitters(n int) {
	db.reqs = make(chan *enqueueReq, maxBatch)
	db.stop = make(chan struct{})
	db.commit.Add(n)
	for range n {
		go db.committer()
	}
}

// stopCommitters stops the committers after their current batch (and the
// clock's resync, clock.go), and fails requests still waiting with store.ErrClosed. Enqueue no longer
// sends (db.closed is set).
func (db *DB) stopCommitters() {
	close(db.stop)
	db.commit.Wait()
	for {
		select {
		case r := <-db.reqs:
			r.done <- enqueueRes{err: store.ErrClosed}
		default:
			return
		}
	}
}

// Enqueue stores a webhook and its dedupe marker in one transaction, shared
// with concurrent callers, and returns after the commit. A marker for the
// same tenant and body hash that has not expired and names an entry still
// waiting for its delivery makes it a duplicate: nothing is written and id
// is the first copy's id. The marker's primary key decides between
// replicas that receive the same body at once; within a batch the first
// copy is the one written.
func (db *DB) Enqueue(ctx context.Context, e store.Entry) (id string, duplicate bool, err error) {
	if db.qg.PrimaryBad() {
		// A record authenticated under a primary key that does not match
		// the data would fail its check once the keyring is fixed:
		// refused (503), so Plaid sends it again later (entry_auth.go).
		return "", false, fmt.Errorf("store: enqueue: %w", db.keyErr)
	}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return "", false, store.ErrClosed
	}
	r := &enqueueReq{ctx: ctx, e: e, done: make(chan enqueueRes, 1)}
	select {
	case db.reqs <- r:
		db.closeMu.RUnlock()
	case <-ctx.Done():
		db.closeMu.RUnlock()
		return "", false, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.id, res.dup, res.err
	case <-ctx.Done():
		// The batch may still commit; a retry by Plaid is then a duplicate.
		return "", false, ctx.Err()
	}
}

func (db *DB) committer() {
	defer db.commit.Done()
	batch := make([]*enqueueReq, 0, maxBatch)
	for {
		select {
		case <-db.stop:
			return
		case r := <-db.reqs:
			batch = append(batch[:0], r)
		}
		batch = gather(batch, db.reqs, maxBatch)
		db.commitBatch(batch)
	}
}

// gather appends to batch what is waiting on ch, up to max; then yields
// once and gathers again, so callers just answered by the previous batch
// (woken, not yet re-sent) join this one instead of forming the next:
// fewer, larger commits, each paying one WAL flush. The Enqueue committer
// and the writer (writes.go) batch this way.
func gather[T any](batch []T, ch <-chan T, max int) []T {
	for pass := 0; pass < 2 && len(batch) < max; pass++ {
		if pass == 1 {
			runtime.Gosched()
		}
	fill:
		for len(batch) < max {
			select {
			case r := <-ch:
				batch = append(batch, r)
			default:
				break fill
			}
		}
	}
	return batch
}

// marker is one distinct (tenant, body hash) of a batch and the requests
// that carry it, in arrival order.
type marker struct {
	tenant string
	sum    []byte
	reqs   []int // indexes into the batch; the first is the one written
	entry  store.Entry
	rec    []byte
	id     string // the written entry's id, or the existing marker's
	dup    bool
}

func (db *DB) commitBatch(batch []*enqueueReq) {
	res := make([]enqueueRes, len(batch))
	now := db.now()
	byKey := map[string]*marker{}
	var ms []*marker
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			res[i].err = err
			continue
		}
		k := r.e.Tenant + "\x00" + string(r.e.BodySHA256[:])
		if m := byKey[k]; m != nil {
			m.reqs = append(m.reqs, i)
			continue
		}
		e := r.e
		e.ID = db.nextID(now)
		e.NextAt = db.toDB(e.NextAt)
		if e.NextAt.IsZero() {
			e.NextAt = now
		}
		rec, err := db.kr.SealEntry(e)
		if err != nil {
			res[i].err = fmt.Errorf("store: enqueue: %w", err)
			continue
		}
		m := &marker{tenant: e.Tenant, sum: e.BodySHA256[:], reqs: []int{i}, entry: e, rec: rec}
		byKey[k] = m
		ms = append(ms, m)
	}
	// Markers are inserted in key order, so two batches (of this replica or
	// another) that share markers lock them in the same order: no deadlock.
	slices.SortFunc(ms, func(a, b *marker) int {
		return cmp.Or(cmp.Compare(a.tenant, b.tenant), bytes.Compare(a.sum, b.sum))
	})
	var err error
	if len(ms) > 0 {
		err = db.writeBatch(ms, now)
	}
	for _, m := range ms {
		for k, i := range m.reqs {
			if err != nil {
				res[i].err = fmt.Errorf("store: enqueue: %w", err)
				continue
			}
			res[i] = enqueueRes{id: m.id, dup: m.dup || k > 0}
		}
		if err == nil && !m.dup {
			db.due.noteDue(m.tenant) // before the answer: a lease after it sees the entry
		}
	}
	for i, r := range batch {
		r.done <- res[i]
	}
}

// batchSQL writes a batch in one statement, so in one round trip and one
// implicit transaction: the markers (taking over expired ones), then the
// queue rows of the entries whose marker was written. It answers the ids
// it wrote; a marker it did not write is an unexpired one, read after by
// markerSQL, and taken over by takeoverSQL if its entry no longer waits.
// It reads no table itself: an earlier version answered every marker by
// joining sc_dedupe, which the planner, with no statistics for a young
// table, did by a sequential scan of every marker for every batch (2.4
// million rows read for 8,700 webhooks in the intake benchmark).
const batchSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[], $5::integer[], $6::timestamptz[], $7::text[])
		AS t(tenant, body_sha256, id, rec, attempts, next_at, last_error)
), ins AS (
	INSERT INTO sc_dedupe (tenant, body_sha256, entry_id, expires_at)
	SELECT tenant, body_sha256, id, $8::timestamptz FROM input
	ON CONFLICT (tenant, body_sha256) DO UPDATE SET entry_id = EXCLUDED.entry_id, expires_at = EXCLUDED.expires_at
		WHERE sc_dedupe.expires_at <= $9
	RETURNING entry_id
), q AS (
	INSERT INTO sc_queue (id, tenant, rec, attempts, next_at, last_error)
	SELECT i.id, i.tenant, i.rec, i.attempts, i.next_at, i.last_error FROM input i JOIN ins ON ins.entry_id = i.id
)
SELECT entry_id FROM ins`

// markerSQL reads the markers a batch did not write, one primary key lookup
// each. They are committed by now: the batch's statement waited for any
// transaction that held them.
const markerSQL = `SELECT (SELECT d.entry_id FROM sc_dedupe d WHERE d.tenant = u.tenant AND d.body_sha256 = u.body_sha256)
	FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(tenant, body_sha256, n) ORDER BY u.n`

// takeoverSQL takes over the markers of a batch's duplicates whose first
// copy no longer waits for its delivery (completed, dead-lettered, or
// leased: see store.DB's waiting), and queues their entries, in one
// statement. It is a statement of its own, after markerSQL, so that its
// snapshot sees the first copies: batchSQL's snapshot predates a marker
// committed by a concurrent batch while it waited, and would have found no
// entry for it. A marker is taken over only if it still names the entry
// markerSQL read (old_id): after a concurrent takeover it names another,
// which the recheck of the updated row sees, and the copy stays a
// duplicate. It answers the ids it queued.
const takeoverSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bytea[], $6::integer[], $7::timestamptz[], $8::text[])
		AS t(tenant, body_sha256, old_id, id, rec, attempts, next_at, last_error)
), up AS (
	UPDATE sc_dedupe d SET entry_id = i.id, expires_at = $9
	FROM input i
	WHERE d.tenant = i.tenant AND d.body_sha256 = i.body_sha256 AND d.entry_id = i.old_id
		AND NOT EXISTS (SELECT 1 FROM sc_queue w WHERE w.id = i.old_id AND NOT w.dead
			AND (w.lease_until IS NULL OR w.lease_until <= $10))
	RETURNING d.entry_id
), q AS (
	INSERT INTO sc_queue (id, tenant, rec, attempts, next_at, last_error)
	SELECT i.id, i.tenant, i.rec, i.attempts, i.next_at, i.last_error FROM input i JOIN up ON up.entry_id = i.id
)
SELECT entry_id FROM up`

// writeBatch writes ms (sorted) and sets each marker's id and dup. The
// committer owns the pool until Close has stopped it, so it does not take
// closeMu.
func (db *DB) writeBatch(ms []*marker, now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	if err := db.queue(ctx, batchSQL, ms, false, now); err != nil {
		return err
	}
	// The markers not written are duplicates of an unexpired marker, which
	// another batch (of this replica or another) wrote: answer its id.
	var dups []*marker
	var tenants []string
	var sums [][]byte
	for _, m := range ms {
		if m.id == "" {
			m.dup = true
			dups = append(dups, m)
			tenants, sums = append(tenants, m.tenant), append(sums, m.sum)
		}
	}
	if len(dups) == 0 {
		return nil
	}
	rows, err := db.pool.Query(ctx, markerSQL, tenants, sums)
	if err != nil {
		return mapErr(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[*string])
	if err != nil {
		return mapErr(err)
	}
	if len(got) != len(dups) {
		return errors.New("pg: enqueue: short marker answer")
	}
	for i, m := range dups {
		if got[i] == nil { // expired and swept since: the caller gets a 503, Plaid retries
			return fmt.Errorf("%w: dedupe marker of a duplicate is gone", store.ErrUnavailable)
		}
		m.id = *got[i]
	}
	// A copy whose first copy no longer waits is queued as a new entry.
	return db.queue(ctx, takeoverSQL, dups, true, now)
}

// queue runs sql (batchSQL, or takeoverSQL with old: each marker's current
// id passed too) over ms's entries, and records each entry the statement
// answers as written: the marker's id is its entry's, not a duplicate.
func (db *DB) queue(ctx context.Context, sql string, ms []*marker, old bool, now time.Time) error {
	n := len(ms)
	byID := make(map[string]*marker, n)
	tenants, sums, olds, ids, recs := make([]string, n), make([][]byte, n), make([]string, n), make([]string, n), make([][]byte, n)
	attempts, next, lastErr := make([]int32, n), make([]time.Time, n), make([]string, n)
	for i, m := range ms {
		e := m.entry
		byID[e.ID] = m
		tenants[i], sums[i], olds[i], ids[i], recs[i] = m.tenant, m.sum, m.id, e.ID, m.rec
		attempts[i], next[i], lastErr[i] = int32(e.Attempts), e.NextAt, e.LastError
	}
	args := []any{tenants, sums}
	if old {
		args = append(args, olds)
	}
	args = append(args, ids, recs, attempts, next, lastErr, now.Add(db.ttl), now)
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return mapErr(err)
	}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		m := byID[id]
		if m == nil {
			return errors.New("pg: enqueue: unknown id in the answer")
		}
		m.id, m.dup = id, false
		return nil
	})
	return mapErr(err)
}
