package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/store"
)

// Issue 12: forwarding reuses connections. A real receiver on 127.0.0.1
// counts the connections it accepts while 4 workers deliver 120 events: at
// most one a worker (the shared default transport kept two idle connections
// a host and dropped those whose answer was unread, so it dialled again and
// again).
func TestForwardReusesConnections(t *testing.T) {
	t.Parallel()
	var conns, delivered atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		delivered.Add(1)
		w.Write([]byte(strings.Repeat("ok", 2048))) //nolint:errcheck // the test counts connections
	}))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	const workers, n = 4, 120
	e := startEnv(t, envConfig{
		forward:    []Destination{{Name: "app", URL: ts.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: workers, TenantWorkers: workers},
	})
	for i := range n {
		if r := e.postSigned("t1.test", event(i)); r.status != 200 {
			t.Fatalf("webhook %d = %d %s", i, r.status, r.body)
		}
	}
	eventually(t, "queue drained", func() bool { q, _ := e.db.QueueLen(); return q == 0 })
	if d := delivered.Load(); d != n {
		t.Fatalf("delivered %d events, want %d", d, n)
	}
	if c := conns.Load(); c > workers {
		t.Errorf("receiver accepted %d connections for %d forwards, want at most %d (one a worker)", c, n, workers)
	}
}

// Issue 12: the queue depth gauge is live: it counts an enqueued webhook at
// once (no worker to sample it) and returns to zero when it is processed.
func TestQueueDepthGaugeIsLive(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	for i := range 3 {
		if r := e.postSigned("t1.test", event(i)); r.status != 200 {
			t.Fatalf("webhook %d = %d %s", i, r.status, r.body)
		}
	}
	// At most depthEvery behind: reads are spaced, a trailing one catches up.
	eventually(t, "queue depth gauge = 3 after 3 webhooks, no workers", func() bool {
		return testutil.ToFloat64(e.srv.metrics.queueDepth) == 3
	})
}

// countingStore counts QueueLen calls.
type countingStore struct {
	Store
	queueLens atomic.Int64
}

func (c *countingStore) QueueLen() (int, error) {
	c.queueLens.Add(1)
	return c.Store.QueueLen()
}

// slowCountStore's QueueLen takes at least slow, like a PostgreSQL count
// over a long queue.
type slowCountStore struct {
	countingStore
	slow time.Duration
}

func (c *slowCountStore) QueueLen() (int, error) {
	time.Sleep(c.slow)
	return c.countingStore.QueueLen()
}

func TestDepthGap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		took, want time.Duration
	}{
		{"instant", 0, depthEvery},
		{"fast", 100 * time.Microsecond, depthEvery},
		{"a long queue", 4 * time.Millisecond, depthCost * 4 * time.Millisecond},
		{"a very long queue", time.Second, depthMost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := depthGap(tt.took); got != tt.want {
				t.Errorf("depthGap(%v) = %v, want %v", tt.took, got, tt.want)
			}
		})
	}
}

// A store whose count is slow is asked less often: the gauge waits
// depthCost times as long as the last read took.
func TestQueueDepthSlowCountWidensGap(t *testing.T) {
	t.Parallel()
	var cs *slowCountStore
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}, store: func(t testing.TB, kr *store.Keyring) Store {
		db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		cs = &slowCountStore{countingStore: countingStore{Store: db}, slow: 5 * time.Millisecond}
		return cs
	}})
	e.srv.depthAt.Store(0) // the next call reads
	e.srv.queueDepth()
	if gap, want := time.Duration(e.srv.depthGap.Load()), depthGap(5*time.Millisecond); gap < want {
		t.Fatalf("gap after a read of 5ms or more = %v, want at least %v", gap, want)
	}
}

// Issue 12: the depth gauge asks the store at most once every depthEvery
// (PostgreSQL's QueueLen counts the queue; asking on every webhook made
// intake slower as the queue grew), and a trailing read catches up.
func TestQueueDepthReadsAreSpaced(t *testing.T) {
	t.Parallel()
	var cs *countingStore
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}, store: func(t testing.TB, kr *store.Keyring) Store {
		db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		cs = &countingStore{Store: db}
		return cs
	}})
	base := cs.queueLens.Load()
	for range 1000 {
		e.srv.queueDepth()
	}
	// 1000 calls in a tight loop span far less than depthEvery: one read
	// now, one trailing. A few more only if the loop was descheduled for
	// several intervals; without spacing it is 1000.
	eventually(t, "the trailing read", func() bool { return cs.queueLens.Load()-base >= 2 })
	if n := cs.queueLens.Load() - base; n > 10 {
		t.Errorf("1000 gauge updates read QueueLen %d times, want about 2", n)
	}
}

// A destination that answers a redirect has not taken the event. The
// forwarder followed 301/302/303 as net/http does: the POST became a GET
// without the body to the Location, whose 200 marked the event delivered,
// and it was gone with nothing dead-lettered. A redirect is now a failed
// attempt (retried, then dead-lettered, replayable) and is not followed.
func TestForwardRedirectIsNotDelivery(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			var followed atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/moved", code)
			})
			mux.HandleFunc("/moved", func(w http.ResponseWriter, _ *http.Request) {
				followed.Add(1)
				w.WriteHeader(http.StatusOK)
			})
			ts := httptest.NewServer(mux)
			t.Cleanup(ts.Close)
			e := startEnv(t, envConfig{
				forward:    []Destination{{Name: "app", URL: ts.URL + "/hook", Secret: []byte("0123456789abcdef0123456789abcdef")}},
				webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
			})
			if r := e.postSigned("t1.test", event(0)); r.status != 200 {
				t.Fatalf("webhook = %d %s", r.status, r.body)
			}
			var dead []store.Entry
			eventually(t, "event dead-lettered", func() bool {
				dead, _ = e.db.DeadLetters(10)
				return len(dead) == 1
			})
			if got := dead[0].Attempts; got != 2 {
				t.Errorf("dead letter attempts = %d, want 2", got)
			}
			if !strings.Contains(dead[0].LastError, "redirect") {
				t.Errorf("dead letter reason = %q, want it to name the redirect", dead[0].LastError)
			}
			if n := followed.Load(); n != 0 {
				t.Errorf("the redirect was followed %d times, want never", n)
			}
		})
	}
}

// A destination URL's query may carry a token (?key=…); forwarding errors
// go to the log, the entry's last error and `safeclose webhooks list`, so
// they name the destination without its query (audit A).
func TestForwardErrorsHideTheURLQuery(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/hook?key=dest-secret-1"
	ln.Close() // nothing listens: connection refused
	var logs lockedBuffer
	e := startEnv(t, envConfig{
		logTo:      &logs,
		forward:    []Destination{{Name: "app", URL: dead, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	var dl []store.Entry
	eventually(t, "event dead-lettered", func() bool {
		dl, _ = e.db.DeadLetters(10)
		return len(dl) == 1
	})
	if le := dl[0].LastError; strings.Contains(le, "dest-secret-1") || !strings.Contains(le, ln.Addr().String()) {
		t.Errorf("last error %q: want the destination's address without its query", le)
	}
	logs.mu.Lock()
	logged := logs.b.String()
	logs.mu.Unlock()
	if strings.Contains(logged, "dest-secret-1") {
		t.Error("the destination's query reached the log")
	}
}
