package pg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A tenant's KV sets wait for their turn before they take a pooled
// connection: while one of them waits for the tenant's advisory lock (here
// held by another session, as another replica's set would), the others
// hold no connection, so another tenant's sets still get one. They used to
// wait for the advisory lock holding a connection each, and a tenant
// writing without pause held the whole pool (TestNoisyKVWritesDoNotStall
// AnotherTenant in proxy failed in CI on PostgreSQL).
func TestKVSetWaitsForItsTenantWithoutAConnection(t *testing.T) {
	db, dsn := openTest(t) // a pool of 4
	ctx := context.Background()
	other := adminConn(t, dsn) // another replica, inside a set of "noisy"
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock("+kvLockKey+")", "noisy"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	noisyCtx, cancel := context.WithCancel(ctx)
	errs := make(chan error, 8)
	for i := range 8 { // twice the pool, all new keys: each needs the advisory lock
		wg.Go(func() {
			_, err := db.KVSet(noisyCtx, "noisy", fmt.Appendf(nil, "k%d", i), []byte("v"), 0, 100)
			errs <- err
		})
	}
	time.Sleep(200 * time.Millisecond) // let them queue
	qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
	defer qcancel()
	if ok, err := db.KVSet(qctx, "quiet", []byte("q"), []byte("v"), 0, 100); err != nil || !ok {
		t.Errorf("another tenant's KVSet while one tenant's sets wait for its lock = %v, %v; want stored", ok, err)
	}
	// Released, the waiting sets go through in turn.
	if len(errs) != 0 { // else the test proves nothing about waiting
		t.Fatalf("%d of the noisy sets returned while their tenant's lock was held", len(errs))
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock("+kvLockKey+")", "noisy"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatal("the waiting sets did not finish within 10 s of the lock's release")
	}
	cancel()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("noisy KVSet = %v", err)
		}
	}
	if _, found, err := db.KVGet(ctx, "noisy", []byte("k7")); err != nil || !found {
		t.Errorf("KVGet(noisy k7) = %v, %v; want found", found, err)
	}
}
