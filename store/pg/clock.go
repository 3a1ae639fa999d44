package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

// The times replicas share (lease ends, retry times, the expiry of dedupe
// markers, Link sessions and plugin keys) are written by one replica and
// compared by another, so they are kept in one clock, the database's
// (RATIONALE.md "Why the PostgreSQL store keeps the database's time"). Each
// replica measures how far PostgreSQL's clock is from its own (Options.Now)
// at Open and every clockResync after, and reads the database's time as its
// own plus that offset. Times crossing the store's API (a retry's next
// attempt, a Link session's expiry, exported and imported records) stay in
// the caller's clock and are translated at the boundary (toDB, fromDB).

// clockResync is how often the offset is measured again, so a replica
// whose clock is stepped or drifts is back in step within it.
const clockResync = time.Minute

// now is the database's time as this replica reads it.
func (db *DB) now() time.Time { return db.local().Add(time.Duration(db.offset.Load())) }

// toDB turns a time of the caller's clock into the database's; the zero
// time stays zero.
func (db *DB) toDB(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(time.Duration(db.offset.Load()))
}

// fromDB turns a time of the database's clock into the caller's.
func (db *DB) fromDB(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(-time.Duration(db.offset.Load()))
}

// measureClock sets the offset from the best of a few readings of the
// database's clock: the one with the shortest round trip, on one
// connection, without a prepare. An offset within half that round trip is
// no offset: that is all a reading can tell apart (a replica on the
// database's own host reads exactly its clock).
func (db *DB) measureClock(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pg: read the database's clock: %w", mapErr(err))
	}
	defer conn.Release()
	var off, best time.Duration
	for i := range 3 {
		t0 := db.local()
		var at time.Time
		if err := conn.QueryRow(ctx, "SELECT clock_timestamp()", pgx.QueryExecModeSimpleProtocol).Scan(&at); err != nil {
			return fmt.Errorf("pg: read the database's clock: %w", mapErr(err))
		}
		rtt := db.local().Sub(t0)
		if i == 0 || rtt < best {
			best, off = rtt, at.Sub(t0.Add(rtt/2))
		}
	}
	if off.Abs() <= best/2 {
		off = 0
	}
	db.offset.Store(int64(off.Round(time.Microsecond))) // timestamptz holds µs: a time translated and back is unchanged
	return nil
}

// resyncClock measures the offset again every clockResync until Close; a
// failed reading keeps the last offset.
func (db *DB) resyncClock() {
	defer db.commit.Done()
	t := time.NewTicker(clockResync)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
		}
		if err := db.op(db.measureClock); err != nil && !errors.Is(err, store.ErrClosed) {
			db.log.Warn("database clock not read; keeping the last offset", "err", err)
		}
	}
}
