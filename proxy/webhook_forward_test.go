package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
	if got := testutil.ToFloat64(e.srv.metrics.queueDepth); got != 3 {
		t.Errorf("queue depth gauge after 3 webhooks, no workers = %v, want 3", got)
	}
}
