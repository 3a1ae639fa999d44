package pg

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// A batch of enqueues reads no table beyond its inserts' key checks: the
// statement used to answer every marker by joining sc_dedupe, which the
// planner did by a sequential scan of every stored marker for every batch,
// so intake slowed as markers piled up (issue 11: 2.4 million marker rows
// read for 8,700 webhooks in BenchmarkWebhookIntakePostgres).
func TestEnqueueBatchReadsNoMarkers(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	db, err := Open(ctx, Options{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 300 {
		body := fmt.Appendf(nil, `{"n":%d}`, i)
		if _, _, err := db.Enqueue(ctx, store.Entry{Tenant: "t", Body: body, BodySHA256: sha256.Sum256(body)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// The plan a pooled connection ends up with: pgx prepares the
	// statement, and PostgreSQL switches to a generic plan after five runs.
	if _, err := c.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for round := range 2 { // a new batch, then a batch of duplicates
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			const n = 20
			tenants, sums, ids, recs := make([]string, n), make([][]byte, n), make([]string, n), make([][]byte, n)
			attempts, next, lastErr := make([]int32, n), make([]time.Time, n), make([]string, n)
			for i := range n {
				body := fmt.Appendf(nil, `{"n":%d}`, 1000*(1-round)+i) // round 1: bodies enqueued above
				sum := sha256.Sum256(body)
				tenants[i], sums[i], ids[i], next[i] = "t", sum[:], fmt.Sprintf("x%023d", i), now
				if recs[i], err = store.EncodeEntry(store.Entry{ID: ids[i], Tenant: "t", Body: body, BodySHA256: sum}); err != nil {
					return err
				}
			}
			rows, err := tx.Query(ctx, batchSQL, tenants, sums, ids, recs, attempts, next, lastErr, now.Add(time.Hour), now)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			if err := rows.Err(); err != nil {
				return err
			}
			var read int64
			if err := tx.QueryRow(ctx, "SELECT pg_stat_get_xact_tuples_returned('sc_dedupe'::regclass)").Scan(&read); err != nil {
				return err
			}
			if read != 0 {
				t.Errorf("round %d: a batch of %d read %d stored markers by scanning sc_dedupe; want 0", round, n, read)
			}
			return errRollback
		})
		if err != errRollback {
			t.Fatal(err)
		}
	}
}

var errRollback = fmt.Errorf("rollback")

// Two replicas receiving copies of one body at once: exactly one copy is
// queued while it waits for its delivery, whichever replica's statement
// wins the marker. The loser's check of the winner's entry (takeoverSQL)
// runs in a statement of its own: in the marker's statement, whose
// snapshot predates the winner's commit, the entry was not there yet and
// the copy was queued twice. Once the first copy is delivered, a copy is
// a new event and is queued.
func TestEnqueueReplicasDedupe(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, Options{DSN: dsn, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	for round := range 40 {
		body := fmt.Appendf(nil, `{"webhook_code":"SYNC_UPDATES_AVAILABLE","round":%d}`, round)
		e := store.Entry{Tenant: "t", Body: body, BodySHA256: sha256.Sum256(body)}
		var ids [2]string
		var dups [2]bool
		var errs [2]error
		start := make(chan struct{})
		done := make(chan int)
		for i, db := range dbs {
			go func() {
				<-start
				ids[i], dups[i], errs[i] = db.Enqueue(ctx, e)
				done <- i
			}()
		}
		close(start)
		<-done
		<-done
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", round, errs[0], errs[1])
		}
		if dups[0] == dups[1] || ids[0] != ids[1] {
			t.Fatalf("round %d: copies at once on two replicas = (%q, dup %v), (%q, dup %v); want one queued, one its duplicate",
				round, ids[0], dups[0], ids[1], dups[1])
		}
	}
	// Deliver every entry; a copy after that is queued.
	for {
		e, ok, err := dbs[0].LeaseNext("w", time.Minute, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if err := dbs[0].Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
	body := []byte(`{"webhook_code":"SYNC_UPDATES_AVAILABLE","round":0}`)
	id, dup, err := dbs[1].Enqueue(ctx, store.Entry{Tenant: "t", Body: body, BodySHA256: sha256.Sum256(body)})
	if err != nil || dup || id == "" {
		t.Fatalf("copy after the first was delivered = %q, dup %v, %v; want a new entry", id, dup, err)
	}
}
