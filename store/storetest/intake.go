package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Issue 11.2: 64 concurrent enqueues, 8 of them copies of another's body
// (so a group commit may hold both copies in one batch): exactly 56 are
// accepted and 8 are duplicates, each copy pair has one of each, the
// duplicate answers the accepted copy's id, and 56 entries are queued.
func testQueueConcurrentIntake(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	type res struct {
		id  string
		dup bool
	}
	results := make([]res, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := make(chan struct{})
	for i := range 64 {
		body := fmt.Sprintf("body-%02d", i)
		if i >= 56 {
			body = fmt.Sprintf("body-%02d", i-56) // a copy of 0..7
		}
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			id, dup, err := s.Enqueue(ctx, entry("t1", body))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			results[i] = res{id, dup}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Enqueue: %d errors, first %v", len(errs), errs[0])
	}
	accepted, dups := 0, 0
	ids := map[string]bool{}
	for i, r := range results {
		if r.id == "" {
			t.Fatalf("Enqueue #%d answered no id", i)
		}
		if r.dup {
			dups++
			continue
		}
		accepted++
		if ids[r.id] {
			t.Fatalf("id %s answered to two accepted enqueues", r.id)
		}
		ids[r.id] = true
	}
	if accepted != 56 || dups != 8 {
		t.Fatalf("64 concurrent enqueues with 8 copies: %d accepted, %d duplicate; want 56 and 8", accepted, dups)
	}
	for i := range 8 {
		a, b := results[i], results[56+i]
		if a.dup == b.dup || a.id != b.id {
			t.Errorf("copy pair %d = %+v and %+v; want one accepted, one duplicate, same id", i, a, b)
		}
	}
	if n, err := s.QueueLen(); err != nil || n != 56 {
		t.Fatalf("QueueLen = %d, %v, want 56", n, err)
	}
}
