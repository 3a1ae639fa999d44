package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// Issue 12: a lease is soft state held in memory, so it does not outlive the
// process: after a restart (a crash, for the store) an entry that was leased
// is leasable at once, with its attempts, and its old token is stale. Before,
// the lease was a synced write per lease and the entry waited for it to
// expire.
func TestLeaseDoesNotOutliveProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	if _, _, err := db.Enqueue(t.Context(), entry("a", "a1")); err != nil {
		t.Fatal(err)
	}
	held, ok, err := db.LeaseNext("w", time.Hour, "", nil)
	if err != nil || !ok {
		t.Fatalf("LeaseNext = %v, %v", ok, err)
	}
	db.Close()
	db = open(t, dir, nil)
	defer db.Close()
	if n, err := db.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen after reopen = %d, %v; want 1", n, err)
	}
	e, ok, err := db.LeaseNext("w2", time.Hour, "", nil)
	if err != nil || !ok || e.ID != held.ID {
		t.Fatalf("LeaseNext after reopen = %q, %v, %v; want %s at once", e.ID, ok, err, held.ID)
	}
	if err := db.Complete(held.ID, held.LeaseToken); !errors.Is(err, ErrStaleLease) {
		t.Errorf("Complete with the dead process's token = %v, want ErrStaleLease", err)
	}
	if err := db.Complete(e.ID, e.LeaseToken); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.QueueLen(); n != 0 {
		t.Errorf("QueueLen after Complete = %d, want 0", n)
	}
}

// Issue 12: the due-time index: a retried entry is not leased before its
// time, also after a restart (NextAt is durable), and an expired lease makes
// its entry leasable again while the holder's token stays valid until then.
func TestIndexDueTimesAndExpiry(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"a1", "a2"} {
		if _, _, err := db.Enqueue(t.Context(), entry("a", b)); err != nil {
			t.Fatal(err)
		}
	}
	e, _, _ := db.LeaseNext("w", time.Minute, "", nil)
	if err := db.Retry(e.ID, e.LeaseToken, clock().Add(time.Hour), "later"); err != nil {
		t.Fatal(err)
	}
	e2, ok, _ := db.LeaseNext("w", time.Minute, "", nil)
	if !ok || string(e2.Body) != "a2" {
		t.Fatalf("LeaseNext = %q, %v; want a2 (a1 is retried in an hour)", e2.Body, ok)
	}
	if _, ok, _ := db.LeaseNext("w", time.Minute, "", nil); ok {
		t.Fatal("leased an entry before its NextAt or under a live lease")
	}
	advance(2 * time.Minute) // a2's lease expired; nobody re-leased it yet
	if err := db.Extend(e2.ID, e2.LeaseToken, time.Minute); err != nil {
		t.Errorf("Extend of an expired lease nobody took = %v, want nil", err)
	}
	if _, ok, _ := db.LeaseNext("w", time.Minute, "", nil); ok {
		t.Fatal("leased an entry whose lease was extended")
	}
	db.Close()
	db, err = Open(Options{Dir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, ok, _ := db.LeaseNext("w", time.Minute, "", nil)
	if !ok || string(got.Body) != "a2" {
		t.Fatalf("after reopen LeaseNext = %q, %v; want a2 (a1 still waits)", got.Body, ok)
	}
	advance(time.Hour)
	got, ok, _ = db.LeaseNext("w", time.Minute, "", nil)
	if !ok || string(got.Body) != "a1" || got.Attempts != 1 || got.LastError != "later" {
		t.Fatalf("after its NextAt LeaseNext = %q (attempts %d, %q), %v; want a1, 1, later", got.Body, got.Attempts, got.LastError, ok)
	}
}
