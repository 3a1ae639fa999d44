package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// receiver is a forwarding destination that counts deliveries per
// webhook-id; block, if set, holds each request until it is closed.
type receiver struct {
	mu      sync.Mutex
	started int
	ids     map[string]int
	block   chan struct{}
	delay   time.Duration
}

func newReceiver(t *testing.T, r *receiver) *httptest.Server {
	r.ids = map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.started++
		r.mu.Unlock()
		if r.block != nil {
			select {
			case <-r.block:
			case <-req.Context().Done():
				return
			}
		}
		if r.delay > 0 {
			time.Sleep(r.delay)
		}
		r.mu.Lock()
		r.ids[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (r *receiver) counts() (started, done int, ids map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids = map[string]int{}
	for k, v := range r.ids {
		ids[k] = v
		done += v
	}
	return r.started, done, ids
}

func event(n int) []byte {
	return fmt.Appendf(nil, `{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE","item_id":"no-such-item","n":%d}`, n)
}

// Issue 9.9: work on an entry that outlasts the lease (a slow destination)
// never lets another worker lease it: each event reaches the destination once.
// The delivery takes three lease periods; the heartbeat extends the lease
// every third of one, so only a stall of two thirds of a period (200 ms)
// could let the lease lapse (a 100 ms lease failed once on a machine
// saturated by the browser tests).
func TestSlowForwardOutlastingLeaseDeliversOnce(t *testing.T) {
	t.Parallel()
	rv := &receiver{delay: 900 * time.Millisecond}
	ts := newReceiver(t, rv)
	e := startEnv(t, envConfig{
		forward:    []Destination{{Name: "app", URL: ts.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: 3, Lease: 300 * time.Millisecond},
	})
	const n = 4
	for i := range n {
		if r := e.postSigned("t1.test", event(i)); r.status != 200 {
			t.Fatalf("webhook %d = %d %s", i, r.status, r.body)
		}
	}
	eventually(t, "queue drained", func() bool { q, _ := e.db.QueueLen(); return q == 0 })
	_, done, ids := rv.counts()
	if done != n || len(ids) != n {
		t.Errorf("destination got %d deliveries of %d ids, want %d of %d: %v", done, len(ids), n, n, ids)
	}
}

// Issue 9.9: tenant t1's destination hangs with a backlog; t2's event is
// still processed while every t1 delivery is blocked.
func TestSlowTenantDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	slow := &receiver{block: make(chan struct{})}
	slowTS := newReceiver(t, slow)
	fast := &receiver{}
	fastTS := newReceiver(t, fast)
	var once sync.Once
	unblock := func() { once.Do(func() { close(slow.block) }) }
	t.Cleanup(unblock)
	e := startEnv(t, envConfig{
		webhookOpt: WebhookOptions{Workers: 2},
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
			ts[0].Forward = []Destination{{Name: "slow", URL: slowTS.URL, Secret: secret}}
			ts[1].Forward = []Destination{{Name: "fast", URL: fastTS.URL, Secret: secret}}
			return ts
		}})
	for i := range 20 {
		if r := e.postSigned("t1.test", event(i)); r.status != 200 {
			t.Fatalf("t1 webhook %d = %d %s", i, r.status, r.body)
		}
	}
	eventually(t, "t1 delivery blocked", func() bool { s, _, _ := slow.counts(); return s >= 1 })
	if r := e.postSigned("t2.test", event(100)); r.status != 200 {
		t.Fatalf("t2 webhook = %d %s", r.status, r.body)
	}
	eventually(t, "t2 delivered while t1 is blocked", func() bool { _, d, _ := fast.counts(); return d == 1 })
	if _, d, _ := slow.counts(); d != 0 {
		t.Fatalf("t1 deliveries completed = %d, want 0 (still blocked)", d)
	}
	unblock()
	eventually(t, "t1 backlog delivered", func() bool { _, d, _ := slow.counts(); return d == 20 })
}

// Issue 9.9: a graceful stop with an entry under work releases it: its
// attempts are unchanged and it can be leased again at once.
func TestShutdownReleasesLeasedEntries(t *testing.T) {
	t.Parallel()
	rv := &receiver{block: make(chan struct{})}
	ts := newReceiver(t, rv)
	defer close(rv.block)
	e := startEnv(t, envConfig{
		forward:    []Destination{{Name: "app", URL: ts.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: 1, Lease: time.Minute},
	})
	if r := e.postSigned("t1.test", event(1)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	eventually(t, "delivery under way", func() bool { s, _, _ := rv.counts(); return s >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-e.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	e.srv = nil // stopped; the cleanup only closes the store
	t.Cleanup(func() { _ = e.db.Close() })
	es, err := e.db.Lease("check", time.Minute, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("Lease after shutdown = %d entries, %v; want the released entry", len(es), err)
	}
	if es[0].Attempts != 0 || es[0].LastError != "" {
		t.Errorf("released entry attempts = %d (%q), want 0", es[0].Attempts, es[0].LastError)
	}
}

// staleExtendStore is a Badger store that refuses every lease extension as
// stale, as when another worker took the entry after the lease ran out.
type staleExtendStore struct {
	*store.DB
	extends atomic.Int64
}

func (s *staleExtendStore) Extend(string, uint64, time.Duration) error {
	s.extends.Add(1)
	return store.ErrStaleLease
}

// A lost lease cancels the work on its entry at once: the delivery in
// flight is abandoned (context canceled), not waited out until the
// destination answers or the client times out, and the attempt is
// retried.
func TestLostLeaseCancelsWork(t *testing.T) {
	t.Parallel()
	rv := &receiver{block: make(chan struct{})}
	ts := newReceiver(t, rv)
	t.Cleanup(func() { close(rv.block) })
	var logs lockedBuf
	var st *staleExtendStore
	e := startEnv(t, envConfig{
		forward:    []Destination{{Name: "app", URL: ts.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: 1, Lease: 60 * time.Millisecond, Backoff: time.Hour},
		logTo:      &logs,
		store: func(t testing.TB, kr *store.Keyring) Store {
			db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st = &staleExtendStore{DB: db}
			return st
		},
	})
	if r := e.postSigned("t1.test", event(1)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	eventually(t, "the attempt abandoned and retried", func() bool {
		l := logs.String()
		return strings.Contains(l, "webhook lease lost") && strings.Contains(l, "will retry") && strings.Contains(l, "context canceled")
	})
	if n := st.extends.Load(); n != 1 {
		t.Errorf("%d extensions tried after the lease was lost, want 1", n)
	}
}

// heldLease is a real store whose LeaseNext holds its answer a while after
// the store has leased, so that concurrent leases overlap; it records how
// many were under way at once.
type heldLease struct {
	*store.DB
	hold      time.Duration
	cur, peak atomic.Int32
}

func (h *heldLease) LeaseNext(owner string, d time.Duration, after string, allow func(string) bool) (store.Entry, bool, error) {
	n := h.cur.Add(1)
	defer h.cur.Add(-1)
	for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
	}
	e, ok, err := h.DB.LeaseNext(owner, d, after, allow)
	time.Sleep(h.hold)
	return e, ok, err
}

// Issue 12: workers lease concurrently (on PostgreSQL concurrent leases
// share a commit; taken one at a time they capped forwarding at one lease
// per commit), and the per-tenant limit still holds exactly while leases
// overlap: a tenant's slot is taken when the store chooses it, not when
// the lease returns.
func TestConcurrentLeasesKeepTenantLimit(t *testing.T) {
	kr, err := store.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	for i := range 10 {
		for _, tn := range []string{"t1", "t2"} {
			body := fmt.Appendf(nil, `{"n":%d,"tenant":%q}`, i, tn)
			if _, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: tn, Body: body, ReceivedAt: time.Now(), BodySHA256: sha256.Sum256(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := &heldLease{DB: db, hold: 100 * time.Millisecond}
	s := &Server{db: h, opts: Options{Webhooks: WebhookOptions{Lease: time.Minute}}}
	const limit, leasers = 2, 8
	tr := &turns{busy: map[string]int{}, limit: limit, workers: leasers}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	for i := range leasers {
		wg.Go(func() {
			e, ok, err := s.lease(tr, fmt.Sprint("w", i))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				got[e.Tenant]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got["t1"] != limit || got["t2"] != limit {
		t.Fatalf("%d overlapping leases over two tenants with limit %d got %v, want %d each", leasers, limit, got, limit)
	}
	if p := h.peak.Load(); p < 2*limit {
		t.Fatalf("at most %d leases were under way at once, want the %d that succeeded overlapping", p, 2*limit)
	}
	if tr.busy["t1"] != limit || tr.busy["t2"] != limit || len(tr.busy) != 2 {
		t.Fatalf("busy = %v after the leases, want %d per tenant (no slot of a failed lease kept)", tr.busy, limit)
	}
	tr.done("t1")
	if e, ok, err := s.lease(tr, "again"); err != nil || !ok || e.Tenant != "t1" {
		t.Fatalf("after one t1 entry is done, a lease got %q, %v, %v; want t1's next entry", e.Tenant, ok, err)
	}
}

// Two tenants whose destinations hang could each hold their share of the
// workers (half each) and so every one of them, leaving a third tenant's
// events waiting for as long as the other two's backlogs take (noisy
// neighbour pass): a tenant already worked on takes another worker only
// while one stays free for a tenant that holds none.
func TestTwoHangingTenantsLeaveAWorkerForAThird(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	slow1, slow2 := &receiver{block: make(chan struct{})}, &receiver{block: make(chan struct{})}
	ts1, ts2 := newReceiver(t, slow1), newReceiver(t, slow2)
	fast := &receiver{}
	fastTS := newReceiver(t, fast)
	var once sync.Once
	unblock := func() { once.Do(func() { close(slow1.block); close(slow2.block) }) }
	t.Cleanup(unblock)
	e := startEnv(t, envConfig{
		webhookOpt: WebhookOptions{Workers: 4}, // each tenant may hold 2
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
			t3 := ts[1]
			t3.Name, t3.Hosts = "t3", []string{"t3.test"}
			ts[0].Forward = []Destination{{Name: "slow1", URL: ts1.URL, Secret: secret}}
			ts[1].Forward = []Destination{{Name: "slow2", URL: ts2.URL, Secret: secret}}
			t3.Forward = []Destination{{Name: "fast", URL: fastTS.URL, Secret: secret}}
			return append(ts, t3)
		}})
	for i := range 10 {
		for _, host := range []string{"t1.test", "t2.test"} {
			if r := e.postSigned(host, event(i)); r.status != 200 {
				t.Fatalf("%s webhook %d = %d %s", host, i, r.status, r.body)
			}
		}
	}
	eventually(t, "three deliveries hanging", func() bool {
		s1, _, _ := slow1.counts()
		s2, _, _ := slow2.counts()
		return s1+s2 >= 3
	})
	if r := e.postSigned("t3.test", event(100)); r.status != 200 {
		t.Fatalf("t3 webhook = %d %s", r.status, r.body)
	}
	eventually(t, "t3 delivered while t1 and t2 hang", func() bool { _, d, _ := fast.counts(); return d == 1 })
	// Delivered on the worker kept free, not on one freed when a hanging
	// attempt timed out (a retry would start the count again).
	s1, _, _ := slow1.counts()
	s2, _, _ := slow2.counts()
	if s1+s2 != 3 {
		t.Fatalf("t1 and t2 had %d deliveries started when t3's arrived; want 3 (one worker kept for t3)", s1+s2)
	}
	unblock()
	eventually(t, "the backlogs delivered", func() bool {
		_, d1, _ := slow1.counts()
		_, d2, _ := slow2.counts()
		return d1 == 10 && d2 == 10
	})
}
