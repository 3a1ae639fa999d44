package pg

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

func enqueueBody(t *testing.T, db *DB, tenant, body string) string {
	t.Helper()
	id, _, err := db.Enqueue(context.Background(), store.Entry{Tenant: tenant, Body: []byte(body), BodySHA256: sha256.Sum256([]byte(tenant + body))})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// LeaseNext reuses its list of due tenants, but a tenant this replica
// enqueues for joins the turns at once, and one another replica enqueues
// for is found before LeaseNext says nothing is due.
func TestLeaseNextDueList(t *testing.T) {
	db, dsn := openTest(t)
	enqueueBody(t, db, "a", "a-0")
	enqueueBody(t, db, "a", "a-1")
	e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok || e.Tenant != "a" {
		t.Fatalf("LeaseNext = %+v, %v, %v; want a's entry", e, ok, err)
	}
	enqueueBody(t, db, "b", "b-0") // the list read above holds only a
	e, ok, err = db.LeaseNext("w", time.Minute, "a", nil)
	if err != nil || !ok || e.Tenant != "b" {
		t.Fatalf("LeaseNext after a = %+v, %v, %v; want b's new entry (its turn)", e, ok, err)
	}
	e, ok, err = db.LeaseNext("w", time.Minute, "b", nil)
	if err != nil || !ok || string(e.Body) != "a-1" {
		t.Fatalf("LeaseNext after b = %+v, %v, %v; want a-1", e, ok, err)
	}
	other, err := Open(context.Background(), Options{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id := enqueueBody(t, other, "c", "c-0") // another replica: db's list does not know
	e, ok, err = db.LeaseNext("w", time.Minute, "a", nil)
	if err != nil || !ok || e.ID != id {
		t.Fatalf("LeaseNext with only another replica's entry due = %+v, %v, %v; want %s", e, ok, err, id)
	}
	if _, ok, err := db.LeaseNext("w", time.Minute, "", nil); ok || err != nil {
		t.Fatalf("LeaseNext with nothing due = %v, %v", ok, err)
	}
}

// The lease is planned for the queue as it is when it runs, not as it was
// when the connection first ran it: a generic plan made while the queue was
// short (and analyzed so) sorted every queued row of the tenant to take the
// first once the queue had grown (planCacheMode).
func TestLeasePlanFollowsQueue(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	for i := range 3 {
		enqueueBody(t, db, "t1", fmt.Sprint(i))
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// Autovacuum analyzes the queue when it is short, as it mostly is.
	if _, err := conn.Exec(ctx, "ANALYZE sc_queue"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "PREPARE lease(timestamptz, text, bigint, text, timestamptz) AS "+leaseSQL); err != nil {
		t.Fatal(err)
	}
	// More runs than PostgreSQL makes custom plans before it may settle on
	// a generic one.
	for range 10 {
		if _, err := conn.Exec(ctx, "EXECUTE lease(now(), 't1', 7, 'w', now() + interval '1 hour')"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO sc_queue (id, tenant, rec, next_at)
		SELECT lpad(g::text, 24, '0'), 't1', '\x00', now() FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN (COSTS OFF) EXECUTE lease(now(), 't1', 7, 'w', now() + interval '1 hour')")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Sort") { // an index in id order stops at the first due row
		t.Fatalf("lease plan with 20,000 queued:\n%s\nwant no sort", plan)
	}
}
