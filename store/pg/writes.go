package pg

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/safeclose/safeclose/store"
)

// Group commit of the workers' single-row writes: the lease itself (the
// UPDATE of LeaseNext), the lease operations (Complete, Retry, DeadLetter,
// Release, Extend) and RecordOrphan. Outcomes are recorded in the
// background (proxy/webhook_worker.go, record), so several are in flight
// at once, and a worker's next lease joins them. Each used to be its own
// autocommit, so its own commit and WAL flush: three per processed webhook,
// queued beside the intake committer's flushes, and the server's work per
// processed webhook was what held intake back while a worker drained
// (issue 11). Concurrent calls are now gathered, as Enqueue's are (enqueue.go), and
// sent as one pgx.Batch: one round trip, and since the statements sit
// before one Sync, one implicit transaction and one commit. Every caller
// gets its own statement's row count (so store.ErrStaleLease is decided per
// call, as before), and is answered only after COMMIT: an answered write is
// as durable as its own autocommit was. synchronous_commit is left as the
// server has it.
//
// If the batch fails with an SQL error (one statement breaking would abort
// the whole transaction), nothing of it committed, and each statement runs
// again alone, so one bad statement fails only its own caller. A lost
// connection fails the whole batch: running each alone would only wait for
// the same timeout again and again.

// maxWrites caps how many writes share a transaction.
const maxWrites = 256

type writeReq struct {
	key  string // a batch runs its statements in key order (see runWrites)
	sql  string
	args []any
	// scan, if set, reads the statement's one row (a lease's RETURNING);
	// no row is a row count of 0.
	scan func(pgx.Row) error
	done chan writeRes
}

type writeRes struct {
	n   int64 // rows affected
	err error
}

func (db *DB) startWriter() {
	db.writes = make(chan *writeReq, maxWrites)
	db.wstop = make(chan struct{})
	db.wdone = make(chan struct{})
	go db.writer()
}

// stopWriter stops the writer after its current batch and fails the writes
// still waiting with store.ErrClosed. write no longer sends (db.closed is set).
func (db *DB) stopWriter() {
	close(db.wstop)
	<-db.wdone
	for {
		select {
		case r := <-db.writes:
			r.done <- writeRes{err: store.ErrClosed}
		default:
			return
		}
	}
}

// write runs one single-row statement in a transaction shared with
// concurrent writes and returns its row count after the commit. key names
// the row it changes (see runWrites).
func (db *DB) write(key, sql string, args ...any) (int64, error) {
	return db.send(&writeReq{key: key, sql: sql, args: args})
}

// writeRow is write for a statement that returns at most one row, which
// scan reads; found is whether there was one.
func (db *DB) writeRow(key string, scan func(pgx.Row) error, sql string, args ...any) (found bool, err error) {
	n, err := db.send(&writeReq{key: key, sql: sql, args: args, scan: scan})
	return n > 0, err
}

func (db *DB) send(r *writeReq) (int64, error) {
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return 0, store.ErrClosed
	}
	r.done = make(chan writeRes, 1)
	db.writes <- r
	db.closeMu.RUnlock()
	res := <-r.done
	return res.n, res.err
}

// exec runs r's statement alone, or as the next of a batch's results when
// br is set. stmtErr is an error of the statement (a batch fails with it);
// err is r's own (a record that does not decode), which fails only r.
func (r *writeReq) exec(ctx context.Context, db *DB, br pgx.BatchResults) (n int64, stmtErr, err error) {
	if r.scan == nil {
		var tag pgconn.CommandTag
		if br != nil {
			tag, stmtErr = br.Exec()
		} else {
			tag, stmtErr = db.pool.Exec(ctx, r.sql, r.args...)
		}
		return tag.RowsAffected(), stmtErr, nil
	}
	var row pgx.Row
	if br != nil {
		row = br.QueryRow()
	} else {
		row = db.pool.QueryRow(ctx, r.sql, r.args...)
	}
	switch err := r.scan(row); {
	case err == nil:
		return 1, nil, nil
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil, nil
	case errors.Is(err, store.ErrCorrupt):
		return 1, nil, err
	default:
		return 0, err, nil
	}
}

func (db *DB) writer() {
	defer close(db.wdone)
	batch := make([]*writeReq, 0, maxWrites)
	for {
		select {
		case <-db.wstop:
			return
		case r := <-db.writes:
			batch = append(batch[:0], r)
		}
		batch = gather(batch, db.writes, maxWrites) // as the Enqueue committer
		db.runWrites(batch)
	}
}

// runWrites commits batch and answers each caller. The statements run in
// key order (arrival order within a key), so two batches, of this replica
// or another, lock the rows they share in the same order: no deadlock. The
// writer owns the pool until Close has stopped it, so it does not take
// closeMu.
func (db *DB) runWrites(batch []*writeReq) {
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	if len(batch) == 1 {
		r := batch[0]
		n, serr, err := r.exec(ctx, db, nil)
		r.done <- writeRes{n: n, err: mapErr(cmp.Or(serr, err))}
		return
	}
	slices.SortStableFunc(batch, func(a, b *writeReq) int { return cmp.Compare(a.key, b.key) })
	b := &pgx.Batch{}
	for _, r := range batch {
		b.Queue(r.sql, r.args...)
	}
	res := make([]writeRes, len(batch))
	br := db.pool.SendBatch(ctx, b)
	var err error
	for i, r := range batch {
		if res[i].n, err, res[i].err = r.exec(ctx, db, br); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil { // Close reads up to the Sync: the commit
		err = cerr
	}
	if err == nil {
		for i, r := range batch {
			r.done <- writeRes{n: res[i].n, err: mapErr(res[i].err)}
		}
		return
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || errors.Is(mapErr(err), store.ErrUnavailable) {
		err = mapErr(err)
		for _, r := range batch {
			r.done <- writeRes{err: err}
		}
		return
	}
	// An SQL error rolled the whole batch back: run each statement alone.
	for _, r := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
		n, serr, err := r.exec(ctx, db, nil)
		cancel()
		r.done <- writeRes{n: n, err: mapErr(cmp.Or(serr, err))}
	}
}
