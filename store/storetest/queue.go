package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

func testQueueDedupe(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c) // the queue works without a keyring
	ctx := context.Background()
	id1, dup, err := s.Enqueue(ctx, entry("t1", "body-1"))
	must(t, err)
	if dup || id1 == "" {
		t.Fatalf("Enqueue(first) = %q, dup %v", id1, dup)
	}
	id2, dup, err := s.Enqueue(ctx, entry("t1", "body-1"))
	must(t, err)
	if !dup || id2 != id1 {
		t.Fatalf("Enqueue(same body) = %q, dup %v; want the first id %q, dup", id2, dup, id1)
	}
	id3, dup, err := s.Enqueue(ctx, entry("t2", "body-1"))
	must(t, err)
	if dup || id3 == id1 {
		t.Fatalf("Enqueue(same body, other tenant) = %q, dup %v; want a new entry", id3, dup)
	}
	// Concurrent copies of one body: exactly one is accepted.
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Go(func() {
			_, dup, err := s.Enqueue(ctx, entry("t3", "body-race"))
			if err != nil {
				t.Error(err)
				return
			}
			if !dup {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("8 concurrent copies: %d accepted, want 1", accepted)
	}
	if n, err := s.QueueLen(); err != nil || n != 3 {
		t.Fatalf("QueueLen = %d, %v, want 3", n, err)
	}
}

// A copy of a body is a duplicate only while the first copy waits for its
// delivery: some Plaid codes repeat byte for byte as new events, so once
// the first copy's delivery has begun (leased, completed, dead-lettered) the
// same body is a new entry. A retried entry, or one whose lease ran out,
// waits again.
func testQueueDedupeWhileWaiting(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	ctx := context.Background()
	const body = `{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE"}`
	enq := func(step string, wantDup bool, wantID string) string {
		t.Helper()
		id, dup, err := s.Enqueue(ctx, entry("t1", body))
		must(t, err)
		if dup != wantDup || (wantID != "" && id != wantID) || (wantID == "" && id == "") {
			t.Fatalf("%s: Enqueue = %q, dup %v; want dup %v, id %q (\"\" = a new one)", step, id, dup, wantDup, wantID)
		}
		return id
	}
	lease := func(step, want string) store.Entry {
		t.Helper()
		e, ok, err := s.LeaseNext("w1", time.Minute, "", nil)
		must(t, err)
		if !ok || e.ID != want {
			t.Fatalf("%s: LeaseNext = %q, %v; want %q", step, e.ID, ok, want)
		}
		return e
	}
	id1 := enq("first", false, "")
	enq("while the first waits", true, id1)
	e1 := lease("deliver the first", id1)
	id2 := enq("while the first is delivered", false, "")
	if id2 == id1 {
		t.Fatalf("the copy after the first's delivery began reused its id %q", id1)
	}
	enq("while the second waits", true, id2)
	must(t, s.Complete(id1, e1.LeaseToken))
	enq("the first done, the second waiting", true, id2)

	e2 := lease("deliver the second", id2)
	must(t, s.Retry(id2, e2.LeaseToken, c.Now().Add(10*time.Second), "upstream 502"))
	enq("the second waiting for its retry", true, id2)
	c.Add(11 * time.Second)
	e2 = lease("retry the second", id2)
	must(t, s.Complete(id2, e2.LeaseToken))
	id3 := enq("after the second was delivered", false, "")

	e3 := lease("deliver the third", id3)
	must(t, s.DeadLetter(id3, e3.LeaseToken, "gave up"))
	id4 := enq("after the third was dead-lettered", false, "")

	lease("deliver the fourth", id4)
	c.Add(2 * time.Minute) // the fourth's lease runs out: it will be delivered again
	enq("the fourth's lease ran out", true, id4)
	if n, err := s.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen = %d, %v; want 1 (the fourth)", n, err)
	}
}

func testQueueLease(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	id, _, err := s.Enqueue(context.Background(), entry("t1", "b1"))
	must(t, err)
	e, ok, err := s.LeaseNext("w1", time.Minute, "", nil)
	must(t, err)
	if !ok || e.ID != id || string(e.Body) != "b1" || e.LeaseToken == 0 || len(e.Headers) != 1 {
		t.Fatalf("LeaseNext = %+v, %v", e, ok)
	}
	if _, ok, _ := s.LeaseNext("w2", time.Minute, "", nil); ok {
		t.Fatal("a leased entry was leased again")
	}
	must(t, s.Extend(id, e.LeaseToken, time.Minute))
	wantErr(t, "Extend(wrong token)", s.Extend(id, e.LeaseToken+1, time.Minute), store.ErrStaleLease)
	must(t, s.Release(id, e.LeaseToken))
	wantErr(t, "Complete(released)", s.Complete(id, e.LeaseToken), store.ErrStaleLease)
	e2, ok, err := s.LeaseNext("w2", time.Minute, "", nil)
	must(t, err)
	if !ok || e2.ID != id || e2.Attempts != 0 || e2.LeaseToken == e.LeaseToken {
		t.Fatalf("LeaseNext after Release = %+v, %v", e2, ok)
	}
	must(t, s.Complete(id, e2.LeaseToken))
	wantErr(t, "Complete(twice)", s.Complete(id, e2.LeaseToken), store.ErrStaleLease)
	if n, _ := s.QueueLen(); n != 0 {
		t.Fatalf("QueueLen after Complete = %d", n)
	}
	if _, ok, _ := s.LeaseNext("w1", time.Minute, "", nil); ok {
		t.Fatal("a completed entry was leased")
	}
}

func testQueueRetryDead(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	id, _, err := s.Enqueue(context.Background(), entry("t1", "b1"))
	must(t, err)
	e, _, err := s.LeaseNext("w1", time.Minute, "", nil)
	must(t, err)
	must(t, s.Retry(id, e.LeaseToken, c.Now().Add(10*time.Second), "upstream 502"))
	if _, ok, _ := s.LeaseNext("w1", time.Minute, "", nil); ok {
		t.Fatal("an entry was leased before its retry time")
	}
	c.Add(11 * time.Second)
	e, ok, err := s.LeaseNext("w1", time.Minute, "", nil)
	must(t, err)
	if !ok || e.Attempts != 1 || e.LastError != "upstream 502" {
		t.Fatalf("LeaseNext after retry = %+v, %v", e, ok)
	}
	must(t, s.DeadLetter(id, e.LeaseToken, "gave up"))
	if n, _ := s.QueueLen(); n != 0 {
		t.Fatalf("QueueLen after DeadLetter = %d", n)
	}
	if _, ok, _ := s.LeaseNext("w1", time.Minute, "", nil); ok {
		t.Fatal("a dead letter was leased")
	}
	dl, err := s.DeadLetters(10)
	must(t, err)
	if len(dl) != 1 || dl[0].ID != id || dl[0].Attempts != 2 || dl[0].LastError != "gave up" || string(dl[0].Body) != "b1" {
		t.Fatalf("DeadLetters = %+v", dl)
	}
	wantErr(t, "Replay(unknown)", s.Replay("nope", false), store.ErrNotFound)
	must(t, s.Replay(id, false))
	if dl, _ := s.DeadLetters(10); len(dl) != 0 {
		t.Fatalf("DeadLetters after Replay = %+v", dl)
	}
	e, ok, err = s.LeaseNext("w1", time.Minute, "", nil)
	must(t, err)
	if !ok || e.ID != id || e.Attempts != 0 {
		t.Fatalf("LeaseNext after Replay = %+v, %v", e, ok)
	}
}

// A replica that dies holding a lease: its entry comes back when the lease
// ends, and the dead holder's token is stale.
func testQueueLeaseExpiry(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	id, _, err := s.Enqueue(context.Background(), entry("t1", "b1"))
	must(t, err)
	e, _, err := s.LeaseNext("dead-replica", 30*time.Second, "", nil)
	must(t, err)
	c.Add(29 * time.Second)
	if _, ok, _ := s.LeaseNext("w2", 30*time.Second, "", nil); ok {
		t.Fatal("leased before the first lease ended")
	}
	c.Add(2 * time.Second)
	e2, ok, err := s.LeaseNext("w2", 30*time.Second, "", nil)
	must(t, err)
	if !ok || e2.ID != id || e2.LeaseOwner != "w2" {
		t.Fatalf("LeaseNext after expiry = %+v, %v", e2, ok)
	}
	wantErr(t, "Extend(expired holder)", s.Extend(id, e.LeaseToken, time.Minute), store.ErrStaleLease)
	wantErr(t, "Complete(expired holder)", s.Complete(id, e.LeaseToken), store.ErrStaleLease)
	must(t, s.Complete(id, e2.LeaseToken))
}

func testQueueTurns(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	ctx := context.Background()
	for i := range 3 {
		for _, tn := range []string{"a", "b", "c"} {
			_, _, err := s.Enqueue(ctx, entry(tn, fmt.Sprintf("%s-%d", tn, i)))
			must(t, err)
		}
		c.Add(time.Millisecond)
	}
	var got, asked []string
	last := ""
	allow := func(tn string) bool {
		asked = append(asked, tn)
		return tn != "c"
	}
	for range 4 {
		asked = asked[:0]
		e, ok, err := s.LeaseNext("w", time.Minute, last, allow)
		must(t, err)
		if !ok {
			t.Fatal("nothing leased")
		}
		// allow is asked about a tenant just before its lease is tried, so
		// the tenant leased from is the last one asked: the proxy's allow
		// takes a slot of each tenant it accepts.
		if len(asked) == 0 || asked[len(asked)-1] != e.Tenant {
			t.Fatalf("leased from %s after allow was asked about %v; want it asked last", e.Tenant, asked)
		}
		got = append(got, string(e.Body))
		last = e.Tenant
	}
	if fmt.Sprint(got) != "[a-0 b-0 a-1 b-1]" {
		t.Fatalf("leases = %v, want tenants in turn, oldest first, c refused", got)
	}
}

// Concurrent leasers (in one process or several replicas) never hold the same entry.
func testQueueConcurrent(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, nil, c)
	const n = 40
	for i := range n {
		_, _, err := s.Enqueue(context.Background(), entry(fmt.Sprintf("t%d", i%3), fmt.Sprint(i)))
		must(t, err)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			owner := fmt.Sprint("w", w)
			for range n {
				e, ok, err := s.LeaseNext(owner, time.Hour, "", nil)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				if prev, dup := seen[e.ID]; dup {
					t.Errorf("entry %s leased by %s and %s", e.ID, prev, owner)
				}
				seen[e.ID] = owner
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d entries leased, want %d", len(seen), n)
	}
}

// With a keyring, a queue record is delivered only if a key of the keyring
// authenticated it (store/entry_auth.go). One written without keys (which
// is what anyone who can write the database but has no key can write)
// becomes a dead letter with the reason, listed as unauthenticated, and is
// replayed only when the operator vouches for it. One under a key the
// keyring lacks, or read while the keyring does not match the data, is
// held: neither delivered nor dead-lettered, until keys that can check it
// are there. Without a keyring every record is delivered; a rotation
// carries queued records over to the new primary; while the keyring does
// not match the data nothing is queued (Plaid sends it again).
func testQueueAuthenticated(t *testing.T, open Opener) {
	c := newClock()
	ctx := context.Background()
	lease := func(s Store) (store.Entry, bool) {
		t.Helper()
		e, ok, err := s.LeaseNext("w", time.Minute, "", nil)
		must(t, err)
		if ok {
			must(t, s.Complete(e.ID, e.LeaseToken))
		}
		return e, ok
	}
	// leaseHeld is lease past held entries: PostgreSQL holds one a call
	// (store/pg leaseOne), Badger all it meets.
	leaseHeld := func(s Store) (store.Entry, bool) {
		t.Helper()
		for range 5 {
			if e, ok := lease(s); ok {
				return e, ok
			}
		}
		return store.Entry{}, false
	}
	sessions := 0
	reopen := func(s Store, kr *store.Keyring) Store {
		t.Helper()
		must(t, s.Close())
		c.Add(time.Second) // entry ids are time-ordered; a reopened store's sequence starts again
		s = openWith(t, open, kr, c)
		// A reopened PostgreSQL store measures the test clock against the
		// database's again, so what the clock gained in the last session
		// is not carried over: each session starts an hour further on
		// than the last did, past its holds and the due times it wrote.
		sessions++
		c.Add(time.Duration(sessions) * time.Hour)
		return s
	}

	s := openWith(t, open, nil, c)
	keylessID, _, err := s.Enqueue(ctx, entry("t1", "written-without-keys"))
	must(t, err)
	s = reopen(s, keyring(t, "k0"))
	_, _, err = s.Enqueue(ctx, entry("t1", "written-under-k0"))
	must(t, err)
	if e, ok := lease(s); !ok || string(e.Body) != "written-under-k0" {
		t.Fatalf("LeaseNext with a keyring = %q, %v; want only the authenticated entry", e.Body, ok)
	}
	if _, ok := lease(s); ok {
		t.Fatal("an unauthenticated entry was leased")
	}
	dl, err := s.DeadLetters(10)
	must(t, err)
	if len(dl) != 1 || dl[0].ID != keylessID || dl[0].LastError != store.UnauthenticatedReason || dl[0].Authenticated {
		t.Fatalf("dead letters = %+v; want the unauthenticated entry, listed as such, with its reason", dl)
	}
	if n, err := s.QueueLen(); err != nil || n != 0 {
		t.Fatalf("QueueLen = %d, %v; want 0", n, err)
	}
	wantErr(t, "Replay(unauthenticated, not vouched)", s.Replay(keylessID, false), store.ErrUnauthenticated)
	must(t, s.Replay(keylessID, true))
	if e, ok := lease(s); !ok || e.ID != keylessID || string(e.Body) != "written-without-keys" {
		t.Fatalf("LeaseNext after its vouched replay = %+v, %v", e, ok)
	}

	// A genuine dead letter is listed as authenticated, and replayed
	// without vouching.
	_, _, err = s.Enqueue(ctx, entry("t1", "genuine-dead"))
	must(t, err)
	e, ok, err := s.LeaseNext("w", time.Minute, "", nil)
	must(t, err)
	if !ok {
		t.Fatal("nothing leased")
	}
	must(t, s.DeadLetter(e.ID, e.LeaseToken, "app down"))
	if dl, err := s.DeadLetters(10); err != nil || len(dl) != 1 || !dl[0].Authenticated || dl[0].LastError != "app down" {
		t.Fatalf("dead letters = %+v, %v; want the genuine one, authenticated", dl, err)
	}
	must(t, s.Replay(e.ID, false))
	if e, ok := lease(s); !ok || string(e.Body) != "genuine-dead" {
		t.Fatalf("LeaseNext after a replay = %q, %v", e.Body, ok)
	}

	// Without a keyring an authenticated record cannot be checked: held
	// (neither delivered nor retried nor dead-lettered, which would drop
	// its MAC), while a framed one is delivered as ever; with the keys
	// back the held one is delivered.
	_, _, err = s.Enqueue(ctx, entry("t1", "under-k0-then-keyless"))
	must(t, err)
	s = reopen(s, nil)
	_, _, err = s.Enqueue(ctx, entry("t1", "framed-keyless"))
	must(t, err)
	if e, ok := leaseHeld(s); !ok || string(e.Body) != "framed-keyless" {
		t.Fatalf("LeaseNext without a keyring = %q, %v; want only the framed entry", e.Body, ok)
	}
	if dl, err := s.DeadLetters(10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v; want none (held)", dl, err)
	}
	s = reopen(s, keyring(t, "k0"))
	if e, ok := lease(s); !ok || string(e.Body) != "under-k0-then-keyless" {
		t.Fatalf("LeaseNext with the keys back = %q, %v", e.Body, ok)
	}

	// A rotation authenticates queued records under the new primary, so
	// the old key can go.
	_, _, err = s.Enqueue(ctx, entry("t1", "rotated"))
	must(t, err)
	s = reopen(s, keyring(t, "k1", "k0"))
	_, err = s.Rotate()
	must(t, err)
	s = reopen(s, keyring(t, "k1"))
	if e, ok := lease(s); !ok || string(e.Body) != "rotated" {
		t.Fatalf("LeaseNext after a rotation, old key gone = %q, %v", e.Body, ok)
	}

	// Under a key the keyring lacks (a replica not yet given the new key,
	// or a key dropped before its rotation): held, then delivered by keys
	// that have it.
	_, _, err = s.Enqueue(ctx, entry("t1", "under-k1"))
	must(t, err)
	s = reopen(s, keyring(t, "k2"))
	if e, ok := lease(s); ok {
		t.Fatalf("LeaseNext with its key missing = %q; want it held", e.Body)
	}
	if dl, err := s.DeadLetters(10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v; want none (held)", dl, err)
	}
	if n, err := s.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen = %d, %v; want the held entry", n, err)
	}
	c.Add(store.HoldFor + time.Second)
	if _, ok := lease(s); ok {
		t.Fatal("a held entry was delivered without its key")
	}
	s = reopen(s, keyring(t, "k2", "k1"))
	if e, ok := lease(s); !ok || string(e.Body) != "under-k1" {
		t.Fatalf("LeaseNext once its key is back = %q, %v", e.Body, ok)
	}

	// Keyring bytes that do not match the data (the right id, the wrong
	// key): nothing is queued, and what was is held, not dead-lettered.
	_, _, err = s.Enqueue(ctx, entry("t1", "before-the-wrong-key"))
	must(t, err)
	wrong, err := store.NewKeyring("k2", map[string][]byte{"k2": make([]byte, 32), "k1": make([]byte, 32)})
	must(t, err)
	s = reopen(s, wrong)
	wantErr(t, "KeyStatus(wrong bytes)", s.KeyStatus(), store.ErrKeyMismatch)
	_, _, err = s.Enqueue(ctx, entry("t1", "during-the-wrong-key"))
	wantErr(t, "Enqueue(wrong key bytes)", err, store.ErrKeyMismatch)
	if e, ok := lease(s); ok {
		t.Fatalf("LeaseNext with the wrong key bytes = %q; want it held", e.Body)
	}
	if dl, err := s.DeadLetters(10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v; want none (held)", dl, err)
	}
	s = reopen(s, keyring(t, "k2", "k1"))
	if e, ok := lease(s); !ok || string(e.Body) != "before-the-wrong-key" {
		t.Fatalf("LeaseNext once the key is fixed = %q, %v", e.Body, ok)
	}
}

// The keyring states an operator meets while rotating keys. A primary key
// whose bytes do not match the data (a typo in the new key) holds the
// whole queue, even entries a good key authenticated, and refuses new
// ones: a retry, a dead letter or a replay would authenticate them under
// the wrong bytes. An old key dropped before `keys rotate` only holds what
// it authenticated: new webhooks are queued under the primary, which is
// right.
func testQueueKeyStates(t *testing.T, open Opener) {
	c := newClock()
	ctx := context.Background()
	sessions := 0
	s := openWith(t, open, keyring(t, "k0"), c)
	reopen := func(kr *store.Keyring) {
		t.Helper()
		must(t, s.Close())
		c.Add(time.Second)
		s = openWith(t, open, kr, c)
		sessions++
		c.Add(time.Duration(sessions) * time.Hour) // as in testQueueAuthenticated
	}
	drain := func() []string {
		t.Helper()
		var got []string
		for range 10 { // PostgreSQL holds one entry a call
			e, ok, err := s.LeaseNext("w", time.Minute, "", nil)
			must(t, err)
			if ok {
				must(t, s.Complete(e.ID, e.LeaseToken))
				got = append(got, string(e.Body))
			}
		}
		return got
	}
	must(t, s.SaveItem(item("t1", "alice", "i1", c.Now()), "tok"))
	_, _, err := s.Enqueue(ctx, entry("t1", "under-k0"))
	must(t, err)

	// The new primary k1 is written with a typo.
	reopen(keyring(t, "k1", "k0"))
	typo, err := store.NewKeyring("k1", map[string][]byte{"k1": make([]byte, 32), "k0": keyBytes("k0")})
	must(t, err)
	reopen(typo)
	wantErr(t, "KeyStatus(primary typo)", s.KeyStatus(), store.ErrKeyMismatch)
	_, _, err = s.Enqueue(ctx, entry("t1", "during-the-typo"))
	wantErr(t, "Enqueue(primary typo)", err, store.ErrKeyMismatch)
	if got := drain(); len(got) != 0 {
		t.Fatalf("delivered %q with the primary's bytes wrong; want everything held", got)
	}
	reopen(keyring(t, "k1", "k0"))
	if got := drain(); len(got) != 1 || got[0] != "under-k0" {
		t.Fatalf("delivered %q with the typo fixed; want under-k0", got)
	}

	// k0, which sealed the item, dropped before `keys rotate`: the
	// primary is right, so webhooks are queued; what k0 authenticated
	// waits for it.
	_, _, err = s.Enqueue(ctx, entry("t1", "under-k1"))
	must(t, err)
	reopen(keyring(t, "k2", "k0"))
	_, _, err = s.Enqueue(ctx, entry("t1", "under-k2"))
	must(t, err)
	reopen(keyring(t, "k2"))
	wantErr(t, "KeyStatus(k0 dropped)", s.KeyStatus(), store.ErrKeyMismatch)
	_, _, err = s.Enqueue(ctx, entry("t1", "queued-with-k0-dropped"))
	must(t, err)
	if got := drain(); len(got) != 2 || got[0] != "under-k2" || got[1] != "queued-with-k0-dropped" {
		t.Fatalf("delivered %q with k0 dropped; want under-k2 and the new one (under-k1 held)", got)
	}
	reopen(keyring(t, "k2", "k1", "k0"))
	if got := drain(); len(got) != 1 || got[0] != "under-k1" {
		t.Fatalf("delivered %q with the keys back; want under-k1", got)
	}
}
