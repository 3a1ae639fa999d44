package pg

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	dsn := pgtest.Database(t)
	db, err := Open(context.Background(), Options{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dsn
}

// leaseN enqueues and leases n entries of tenant t.
func leaseN(t *testing.T, db *DB, tenant string, n int) []store.Entry {
	t.Helper()
	for i := range n {
		e := store.Entry{Tenant: tenant, Body: fmt.Appendf(nil, "%s-%d", tenant, i)}
		e.BodySHA256[0], e.BodySHA256[1] = byte(i), byte(len(tenant))
		if _, _, err := db.Enqueue(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]store.Entry, n)
	for i := range out {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok {
			t.Fatalf("LeaseNext = %v, %v", ok, err)
		}
		out[i] = e
	}
	return out
}

// xactID is the next transaction id (taking one): the difference of two
// is the write transactions committed between them, plus one.
func xactID(t *testing.T, c *pgx.Conn) int64 {
	t.Helper()
	var x int64
	if err := c.QueryRow(context.Background(), "SELECT pg_current_xact_id()::text::bigint").Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

func completeReq(e store.Entry, lease uint64) *writeReq {
	return &writeReq{key: "q\x00" + e.ID, sql: "DELETE FROM sc_queue WHERE " + held,
		args: []any{e.ID, int64(lease)}, done: make(chan writeRes, 1)}
}

// A batch of Completes is one transaction, and each caller gets its own
// row count: a stale lease among them is that caller's ErrStaleLease only.
func TestWritesBatchAnswersEachCaller(t *testing.T) {
	db, dsn := openTest(t)
	es := leaseN(t, db, "t", 4)
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	batch := []*writeReq{completeReq(es[0], es[0].LeaseToken), completeReq(es[1], es[1].LeaseToken+2),
		completeReq(es[2], es[2].LeaseToken), completeReq(es[3], es[3].LeaseToken)}
	x0 := xactID(t, c)
	db.runWrites(slices.Clone(batch)) // it sorts its argument
	if n := xactID(t, c) - x0 - 1; n != 1 {
		t.Errorf("a batch of 4 Completes took %d transactions, want 1", n)
	}
	for i, r := range batch {
		res := <-r.done
		want := int64(1)
		if i == 1 {
			want = 0
		}
		if res.err != nil || res.n != want {
			t.Errorf("write %d = %d, %v; want %d rows, no error", i, res.n, res.err, want)
		}
	}
	if n, err := db.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen = %d, %v; want 1 (the stale Complete's entry)", n, err)
	}
	// Through the API, concurrently: each answer is its own.
	es = leaseN(t, db, "u", 8)
	var wg sync.WaitGroup
	errs := make([]error, len(es))
	for i, e := range es {
		lease := e.LeaseToken
		if i%3 == 0 {
			lease++ // stale
		}
		wg.Go(func() { errs[i] = db.Complete(e.ID, lease) })
	}
	wg.Wait()
	for i, err := range errs {
		if stale := i%3 == 0; stale != errors.Is(err, store.ErrStaleLease) || (!stale && err != nil) {
			t.Errorf("Complete %d (stale lease %v) = %v", i, stale, err)
		}
	}
}

func leaseReq(db *DB, tenant string, got *store.Entry) *writeReq {
	now := db.now()
	return &writeReq{sql: leaseSQL, args: []any{now, tenant, newLeaseToken(), "w2", now.Add(time.Minute)},
		scan: func(row pgx.Row) (err error) { *got, _, _, err = db.scanEntry(row); return err }, done: make(chan writeRes, 1)}
}

// A lease shares its batch's commit: it answers the entry it leased, or
// no row when its tenant has nothing due, and a record that does not
// decode fails that lease alone.
func TestWritesLeaseInBatch(t *testing.T) {
	db, dsn := openTest(t)
	es := leaseN(t, db, "t", 2)
	want := enqueueBody(t, db, "u", "u-0")
	bad := enqueueBody(t, db, "v", "v-0")
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), "UPDATE sc_queue SET rec = '\\x00' WHERE id = $1", bad); err != nil {
		t.Fatal(err)
	}
	var got, none, corrupt store.Entry
	batch := []*writeReq{completeReq(es[0], es[0].LeaseToken), leaseReq(db, "u", &got), leaseReq(db, "nobody", &none),
		leaseReq(db, "v", &corrupt), completeReq(es[1], es[1].LeaseToken)}
	x0 := xactID(t, c)
	reqs := slices.Clone(batch) // runWrites sorts batch
	db.runWrites(batch)
	if n := xactID(t, c) - x0 - 1; n != 1 {
		t.Errorf("a batch of 2 Completes and 3 leases took %d transactions, want 1", n)
	}
	for i, wantN := range []int64{1, 1, 0, 1, 1} {
		res := <-reqs[i].done
		if i == 3 {
			if !errors.Is(res.err, store.ErrCorrupt) {
				t.Errorf("lease of a corrupt record = %v, want store.ErrCorrupt", res.err)
			}
			continue
		}
		if res.err != nil || res.n != wantN {
			t.Errorf("write %d = %d, %v; want %d rows, no error", i, res.n, res.err, wantN)
		}
	}
	if got.ID != want || got.LeaseOwner != "w2" || string(got.Body) != "u-0" {
		t.Errorf("leased %+v, want %s leased to w2", got, want)
	}
}

// A statement that fails rolls its batch back; the others then run alone
// and succeed, and only its own caller gets the error.
func TestWritesFailingStatementFailsOnlyItsCaller(t *testing.T) {
	db, _ := openTest(t)
	es := leaseN(t, db, "t", 2)
	bad := &writeReq{key: "o\x00t\x00x", sql: "INSERT INTO sc_orphans (tenant, key, first_seen, rec) VALUES ($1, $2, $3, NULL)",
		args: []any{"t", "x", time.Now()}, done: make(chan writeRes, 1)}
	batch := []*writeReq{completeReq(es[0], es[0].LeaseToken), bad, completeReq(es[1], es[1].LeaseToken)}
	db.runWrites(slices.Clone(batch)) // it sorts its argument
	for i, r := range batch {
		res := <-r.done
		if r == bad {
			if res.err == nil {
				t.Errorf("write %d (NULL into a NOT NULL column) succeeded", i)
			}
			continue
		}
		if res.err != nil || res.n != 1 {
			t.Errorf("write %d = %d, %v; want 1 row, no error", i, res.n, res.err)
		}
	}
	if n, err := db.QueueLen(); err != nil || n != 0 {
		t.Fatalf("QueueLen = %d, %v; want 0", n, err)
	}
}

// Close while outcomes wait for the writer: every caller is answered, with
// its outcome or store.ErrClosed, and the one being written completes.
func TestWritesCloseWhilePending(t *testing.T) {
	db, dsn := openTest(t)
	es := leaseN(t, db, "t", 9)
	ctx := context.Background()
	// Hold the first entry's row, so the writer's batch waits on it.
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM sc_queue WHERE id = $1 FOR UPDATE", es[0].ID); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- db.Complete(es[0].ID, es[0].LeaseToken) }()
	for waiting := false; !waiting; time.Sleep(time.Millisecond) { // until the writer waits for the row lock
		if err := c.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(es))
	for i, e := range es[1:] {
		wg.Go(func() { errs[i+1] = db.Complete(e.ID, e.LeaseToken) })
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	for !db.isClosed() { // Close has begun: no new write is taken
		runtime.Gosched()
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Errorf("Complete being written at Close = %v, want nil", err)
	}
	wg.Wait()
	for i, err := range errs[1:] {
		if err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Complete %d pending at Close = %v, want nil or store.ErrClosed", i+1, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := db.Complete(es[1].ID, es[1].LeaseToken); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Complete after Close = %v, want store.ErrClosed", err)
	}
}

func (db *DB) isClosed() bool {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	return db.closed
}
