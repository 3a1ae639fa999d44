package store

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 9.9: one entry per lease, tenants in turn, extend and release.
func TestLeaseNextTurnsExtendRelease(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	db, err := Open(Options{InMemory: true, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, e := range []Entry{entry("a", "a1"), entry("a", "a2"), entry("a", "a3"), entry("b", "b1"), entry("c", "c1")} {
		if _, _, err := db.Enqueue(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	// Turns: a, b, c, then a again, although a's entries are oldest.
	var got []string
	var held []Entry
	last := ""
	for range 4 {
		e, ok, err := db.LeaseNext("w", time.Minute, last, nil)
		if err != nil || !ok {
			t.Fatalf("LeaseNext = %v, %v", ok, err)
		}
		got = append(got, string(e.Body))
		held = append(held, e)
		last = e.Tenant
	}
	if want := "a1 b1 c1 a2"; strings.Join(got, " ") != want {
		t.Errorf("lease order = %s, want %s", strings.Join(got, " "), want)
	}
	// allow filters tenants: only "a" is left and it is refused.
	if _, ok, _ := db.LeaseNext("w", time.Minute, "", func(tn string) bool { return tn != "a" }); ok {
		t.Errorf("LeaseNext leased a refused tenant")
	}
	// Extend keeps a1 held past its first lease; a2 (not extended) comes back.
	advance(50 * time.Second)
	if err := db.Extend(held[0].ID, held[0].LeaseToken, time.Minute); err != nil {
		t.Fatal(err)
	}
	advance(20 * time.Second)
	var again []string
	for {
		e, ok, err := db.LeaseNext("w2", time.Minute, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		again = append(again, string(e.Body))
		if len(again) > 10 {
			t.Fatal("LeaseNext never ran dry")
		}
	}
	for _, b := range again {
		if b == "a1" {
			t.Errorf("an extended lease was handed out again: %v", again)
		}
	}
	// Release gives an entry back at once, attempts unchanged.
	if err := db.Release(held[0].ID, held[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	e, ok, err := db.LeaseNext("w3", time.Minute, "", nil)
	if err != nil || !ok || e.ID != held[0].ID || e.Attempts != 0 {
		t.Errorf("after Release: LeaseNext = %s (attempts %d), %v, %v; want a1 with 0", e.Body, e.Attempts, ok, err)
	}
	if err := db.Extend(held[0].ID, held[0].LeaseToken, time.Minute); !errors.Is(err, ErrStaleLease) {
		t.Errorf("Extend of a released lease = %v, want ErrStaleLease", err)
	}
}
