package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Issue 12.3: concurrent writers (workers completing entries, item updates,
// orphans) each paid their own fsync, one after another in Badger's single
// writer, which capped forwarding. They now wait for sync rounds (shared
// when they overlap: TestGroupSyncShares), and every acknowledged write is
// still there after a reopen.
func TestConcurrentWritesShareSyncRounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	const n = 64
	r0 := db.gs.roundCount()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := db.RecordOrphan(Orphan{Kind: OrphanUnknownItem, Tenant: "t", ItemID: fmt.Sprintf("item-%d", i), Detail: "test"})
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("RecordOrphan: %v", err)
		}
	}
	if rounds := db.gs.roundCount() - r0; rounds == 0 || rounds > n {
		t.Errorf("%d concurrent writes took %d sync rounds; want 1 to %d", n, rounds, n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir, nil)
	defer db.Close()
	if os, err := db.Orphans(); err != nil || len(os) != n {
		t.Fatalf("after reopen: %d orphans, %v; want %d", len(os), err, n)
	}
}

// Issue 12.3: the intake's batches are answered after their sync round, and
// a batch committed while the previous one syncs is durable too.
func TestEnqueueAnsweredAfterSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, dup, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), BodySHA256: [32]byte{byte(i), byte(i >> 8)}})
			if err == nil && dup {
				err = errors.New("distinct body answered as a duplicate")
			}
			ids[i] = id
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	rounds := db.gs.roundCount()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if rounds == 0 || rounds >= n {
		t.Errorf("%d enqueues took %d sync rounds; want at least one, shared", n, rounds)
	}
	db = open(t, dir, nil)
	defer db.Close()
	if got, err := db.QueueLen(); err != nil || got != n {
		t.Fatalf("QueueLen after reopen = %d, %v; want %d", got, err, n)
	}
}

// Issue 12.3: a failed fsync is sticky. After it the kernel may have dropped
// the dirty pages, so a later "successful" round proves nothing: every later
// wait reports the failure.
func TestGroupSyncFailureIsSticky(t *testing.T) {
	t.Parallel()
	calls := 0
	g := newGroupSync(func() error {
		calls++
		if calls == 2 {
			return errors.New("EIO")
		}
		return nil
	})
	if err := g.wait(); err != nil {
		t.Fatalf("first wait = %v, want nil", err)
	}
	for i := range 3 {
		if err := g.wait(); err == nil {
			t.Fatalf("wait %d after a failed round = nil, want the failure", i)
		}
	}
	if calls != 2 {
		t.Errorf("fsync rounds after the failure = %d, want none", calls-2)
	}
}

// A round that could not run (unsyncedError: EMFILE while opening a file it
// had to fsync) fails the wait that needed it, runs no more rounds by
// itself, and the next wait runs a fresh round that succeeds.
func TestGroupSyncUnsyncedRoundIsNotSticky(t *testing.T) {
	t.Parallel()
	calls := 0
	g := newGroupSync(func() error {
		calls++
		if calls == 2 {
			return &unsyncedError{errors.New("open: too many open files")}
		}
		return nil
	})
	if err := g.wait(); err != nil {
		t.Fatalf("first wait = %v, want nil", err)
	}
	if err := g.wait(); err == nil {
		t.Fatal("wait on the round that could not run = nil, want its error")
	}
	if calls != 2 {
		t.Fatalf("rounds after the failed one, before anyone waited again = %d, want 0", calls-2)
	}
	for i := range 2 {
		if err := g.wait(); err != nil {
			t.Fatalf("wait %d after the failed round = %v, want nil", i, err)
		}
	}
	if calls != 4 {
		t.Errorf("rounds = %d, want 4 (one each)", calls)
	}
}

// Issue 12.3: a worker's effects (orphans, item state) take no sync round of
// their own; the round that records the entry's outcome, committed after
// them, makes them durable.
func TestDeferredEffectsDurableWithOutcome(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	if _, _, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: []byte(`{}`), BodySHA256: [32]byte{1}}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok {
		t.Fatalf("LeaseNext = %v, %v", ok, err)
	}
	r0 := db.gs.roundCount()
	for i := range 5 {
		if _, err := db.Deferred().RecordOrphan(Orphan{Kind: OrphanUnknownItem, Tenant: "t", ItemID: fmt.Sprintf("i%d", i), Detail: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if r := db.gs.roundCount() - r0; r != 0 {
		t.Errorf("deferred writes ran %d sync rounds, want 0", r)
	}
	if os, err := db.Orphans(); err != nil || len(os) != 5 {
		t.Fatalf("Orphans before the outcome = %d, %v; want 5 (reads see deferred writes)", len(os), err)
	}
	if err := db.Complete(e.ID, e.LeaseToken); err != nil {
		t.Fatal(err)
	}
	if r := db.gs.roundCount() - r0; r != 1 {
		t.Errorf("Complete ran %d sync rounds, want 1", r)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, dir, nil)
	defer db.Close()
	if os, err := db.Orphans(); err != nil || len(os) != 5 {
		t.Fatalf("after reopen: %d orphans, %v; want 5", len(os), err)
	}
}

// Issue 12: a deferred orphan record is one transaction (no read first); a
// repeat still reports false and leaves the first record as it was.
func TestDeferredRecordOrphanRepeat(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	o := Orphan{Kind: OrphanUnknownItem, Tenant: "t", ItemID: "i", Detail: "first"}
	for i, want := range []bool{true, false, false} {
		o.Detail = fmt.Sprint("try ", i)
		fresh, err := db.Deferred().RecordOrphan(o)
		if err != nil || fresh != want {
			t.Fatalf("RecordOrphan #%d = %v, %v; want %v, nil", i, fresh, err, want)
		}
	}
	os, err := db.Orphans()
	if err != nil || len(os) != 1 || os[0].Detail != "try 0" || os[0].Count != 1 {
		t.Fatalf("Orphans = %+v, %v; want the first record only", os, err)
	}
}

// Issue 12.3: a round fsyncs each rotated write-ahead or value log once
// (Badger's Sync covers only the newest), and forgets files that are gone.
func TestOlderLogs(t *testing.T) {
	t.Parallel()
	synced := map[string]bool{"00001.mem": true, "00000.mem": true}
	names := []string{"MANIFEST", "00003.mem", "000001.vlog", "00002.mem", "00001.mem", "000002.vlog", "000001.sst"}
	got := olderLogs(names, synced)
	want := []string{"00002.mem", "000001.vlog"}
	if !slices.Equal(got, want) {
		t.Errorf("olderLogs = %v, want %v", got, want)
	}
	if synced["00000.mem"] || !synced["00001.mem"] {
		t.Errorf("synced after olderLogs = %v; want 00000.mem forgotten, 00001.mem kept", synced)
	}
	if got := olderLogs([]string{"00007.mem", "000003.vlog"}, map[string]bool{}); len(got) != 0 {
		t.Errorf("olderLogs with one log of each kind = %v, want none", got)
	}
}

// Issue 12.4: the first lease of a fresh entry takes it from memory instead
// of reading and decoding its record; it is the record as stored, and the
// caller's buffers are not shared with it.
func TestFreshLeaseIsTheStoredRecord(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	body := []byte(`{"webhook_code":"X"}`)
	in := Entry{Tenant: "t", Body: body, Headers: []Header{{"Content-Type", "application/json"}},
		ReceivedAt: time.Now().UTC(), BodySHA256: [32]byte{9}}
	id, _, err := db.Enqueue(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	body[2] = 'W' // the caller reuses its buffer
	in.Headers[0].Value = "text/plain"
	e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok || e.ID != id {
		t.Fatalf("LeaseNext = %v, %v, %v; want %s", e.ID, ok, err, id)
	}
	stored := storedEntry(t, db, id)
	if !sameRecord(e, stored) || string(e.Body) != `{"webhook_code":"X"}` || e.Headers[0].Value != "application/json" {
		t.Errorf("leased %+v\nstored %+v", e, stored)
	}
	if e.LeaseToken == 0 || e.LeaseOwner != "w" {
		t.Errorf("leased entry lease = %d %q, want a token for w", e.LeaseToken, e.LeaseOwner)
	}
	if db.qi.cached != 0 {
		t.Errorf("bytes kept after the first lease = %d, want 0", db.qi.cached)
	}
}

// Issue 12.4: the entries kept for their first lease are bounded (freshMax),
// so a large backlog costs no more memory than the index; the ones beyond
// it are read from disk.
func TestFreshEntriesBounded(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	const n, max = 40, 64 << 10
	db.qi.mu.Lock()
	db.qi.max = max // freshMax scaled down
	db.qi.mu.Unlock()
	body := make([]byte, max/(n/2))
	for i := range n {
		if _, _, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: body, BodySHA256: [32]byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if c := db.qi.cached; c > max || c == 0 {
		t.Fatalf("bytes kept = %d, want between 1 and %d", c, max)
	}
	for i := range n {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok || len(e.Body) != len(body) {
			t.Fatalf("lease %d = %v, %v, body %d bytes", i, ok, err, len(e.Body))
		}
	}
	if db.qi.cached != 0 {
		t.Errorf("bytes kept after every lease = %d, want 0", db.qi.cached)
	}
}

// Issue 12.3: outcomes (lazy waits) ride a round that another writer
// begins, and lazy waiters alone share one round and still return.
func TestLazyWaitsRideAndShareRounds(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	rounds := 0
	g := newGroupSync(func() error { mu.Lock(); rounds++; mu.Unlock(); return nil })
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- g.waitLazy(1) }()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if rounds == 0 || rounds >= n {
		t.Errorf("%d lazy waits alone ran %d rounds; want them to share", n, rounds)
	}
	// A lazy wait begun before an eager one rides the eager one's round.
	r0 := rounds
	mu.Unlock()
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(started)
		errs <- g.waitLazy(1)
	}()
	<-started
	for i := 0; ; i++ { // bounded: wait until the lazy waiter is registered
		g.mu.Lock()
		l := g.lazy
		g.mu.Unlock()
		if l > 0 || i == 1000 {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	errs <- g.wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if r := rounds - r0; r > 2 {
		t.Errorf("a lazy and an eager wait ran %d rounds, want 1 (at most 2 if the lazy one timed out first)", r)
	}
}

// Issue 12.3: writers that wait while a round runs share the next one.
func TestGroupSyncShares(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	rounds := 0
	g := newGroupSync(func() error {
		mu.Lock()
		rounds++
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a slow disk
		return nil
	})
	const n = 64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := g.wait(); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if rounds > n/4 {
		t.Errorf("%d concurrent waits ran %d rounds; want them shared (at most %d)", n, rounds, n/4)
	}
}

// Issue 12: CompleteRecordingOrphan writes the orphan and the outcome in
// one transaction and one sync round: both survive a reopen; a repeat
// orphan is not new and keeps the first record; a stale lease or an orphan
// the store refuses writes nothing and leaves the entry held, so the
// caller can still write them apart.
func TestCompleteRecordingOrphan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	n := 0
	lease := func() Entry {
		t.Helper()
		n++ // distinct bodies: a repeated one is a duplicate
		if _, _, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: fmt.Appendf(nil, `{"n":%d}`, n), BodySHA256: [32]byte{byte(n)}, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok {
			t.Fatalf("LeaseNext = %v, %v", ok, err)
		}
		return e
	}
	o := Orphan{Kind: OrphanUnknownItem, Tenant: "t", ItemID: "item-1", Detail: "webhook ITEM/ERROR"}

	e := lease()
	r0 := db.gs.roundCount()
	if fresh, err := db.CompleteRecordingOrphan(e.ID, e.LeaseToken, o); err != nil || !fresh {
		t.Fatalf("CompleteRecordingOrphan = %v, %v; want true, nil", fresh, err)
	}
	if r := db.gs.roundCount() - r0; r != 1 {
		t.Errorf("CompleteRecordingOrphan ran %d sync rounds, want 1", r)
	}
	if fresh, err := db.CompleteRecordingOrphan(e.ID, e.LeaseToken, o); !errors.Is(err, ErrStaleLease) || fresh {
		t.Errorf("a second completion = %v, %v; want false, ErrStaleLease", fresh, err)
	}

	e = lease()
	again := o
	again.Detail = "webhook ITEM/LOGIN_REPAIRED"
	if fresh, err := db.CompleteRecordingOrphan(e.ID, e.LeaseToken, again); err != nil || fresh {
		t.Fatalf("CompleteRecordingOrphan of a known orphan = %v, %v; want false, nil", fresh, err)
	}

	e = lease()
	bad := Orphan{Kind: OrphanUnknownItem, Tenant: "t", ItemID: "nul\x00item"}
	if fresh, err := db.CompleteRecordingOrphan(e.ID, e.LeaseToken, bad); err == nil || fresh {
		t.Fatalf("CompleteRecordingOrphan of a refused orphan = %v, %v; want an error", fresh, err)
	}
	if n, err := db.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen after a refused orphan = %d, %v; want 1 (nothing written)", n, err)
	}
	if err := db.Complete(e.ID, e.LeaseToken); err != nil {
		t.Fatalf("Complete after a refused orphan = %v; want the entry still held", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, dir, nil)
	defer db.Close()
	if n, err := db.QueueLen(); err != nil || n != 0 {
		t.Errorf("QueueLen after reopen = %d, %v; want 0", n, err)
	}
	os, err := db.Orphans()
	if err != nil || len(os) != 1 || os[0].ItemID != "item-1" || os[0].Detail != o.Detail || os[0].Count != 1 || os[0].FirstSeen.IsZero() {
		t.Fatalf("Orphans after reopen = %+v, %v; want item-1 as first recorded", os, err)
	}
}
