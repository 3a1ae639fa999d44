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

// stopCommitters stops the committers after their current batch, and
// fails requests still waiting with store.ErrClosed. Enqueue no longer
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
// same tenant and body hash that has not expired makes it a duplicate:
// nothing is written and id is the first copy's id. The marker's primary
// key decides between replicas that receive the same body at once; within
// a batch the first copy is the one written.
func (db *DB) Enqueue(ctx context.Context, e store.Entry) (id string, duplicate bool, err error) {
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
		// Gather what is waiting; yield once and gather again, so callers
		// just answered by the previous batch (woken, not yet re-sent)
		// join this one instead of forming the next: fewer, larger
		// commits, each paying one WAL flush.
		for pass := 0; pass < 2 && len(batch) < maxBatch; pass++ {
			if pass == 1 {
				runtime.Gosched()
			}
		fill:
			for len(batch) < maxBatch {
				select {
				case r := <-db.reqs:
					batch = append(batch, r)
				default:
					break fill
				}
			}
		}
		db.commitBatch(batch)
	}
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
		if e.NextAt.IsZero() {
			e.NextAt = now
		}
		rec, err := store.EncodeEntry(e)
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
	}
	for i, r := range batch {
		r.done <- res[i]
	}
}

// batchSQL writes a batch in one statement, so in one round trip and one
// implicit transaction: the markers (taking over expired ones), then the
// queue rows of the entries whose marker was written. It answers, per
// marker, the entry id now holding it: the batch's own id when written,
// else the id of the marker that existed before the statement began (or
// NULL when another transaction committed it while this one waited).
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
SELECT i.id, ins.entry_id IS NOT NULL, d.entry_id
FROM input i LEFT JOIN ins ON ins.entry_id = i.id
LEFT JOIN sc_dedupe d ON d.tenant = i.tenant AND d.body_sha256 = i.body_sha256`

// writeBatch writes ms (sorted) and sets each marker's id and dup. The
// committer owns the pool until Close has stopped it, so it does not take
// closeMu.
func (db *DB) writeBatch(ms []*marker, now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	n := len(ms)
	byID := make(map[string]*marker, n)
	tenants, sums, ids, recs := make([]string, n), make([][]byte, n), make([]string, n), make([][]byte, n)
	attempts, next, lastErr := make([]int32, n), make([]time.Time, n), make([]string, n)
	for i, m := range ms {
		e := m.entry
		byID[e.ID] = m
		tenants[i], sums[i], ids[i], recs[i] = m.tenant, m.sum, e.ID, m.rec
		attempts[i], next[i], lastErr[i] = int32(e.Attempts), e.NextAt, e.LastError
	}
	rows, err := db.pool.Query(ctx, batchSQL, tenants, sums, ids, recs, attempts, next, lastErr, now.Add(db.ttl), now)
	if err != nil {
		return mapErr(err)
	}
	var id string
	var written bool
	var existing *string
	var late []*marker
	_, err = pgx.ForEachRow(rows, []any{&id, &written, &existing}, func() error {
		m := byID[id]
		if m == nil {
			return errors.New("pg: enqueue: unknown id in the batch answer")
		}
		switch {
		case written:
			m.id, m.dup = id, false
		case existing != nil:
			m.id, m.dup = *existing, true
		default:
			m.dup = true
			late = append(late, m)
		}
		return nil
	})
	if err != nil {
		return mapErr(err)
	}
	// Markers committed by another transaction while this one waited on
	// them: read them now that they are visible.
	for _, m := range late {
		if err := db.pool.QueryRow(ctx, "SELECT entry_id FROM sc_dedupe WHERE tenant = $1 AND body_sha256 = $2",
			m.tenant, m.sum).Scan(&m.id); err != nil {
			return mapErr(err)
		}
	}
	return nil
}
