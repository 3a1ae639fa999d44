package pg

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

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
