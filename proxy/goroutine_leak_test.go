package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// After Shutdown and the store's Close, nothing the server started is still
// running: no fasthttp worker, webhook worker, forwarding or upstream
// connection, Badger goroutine or timer loop. An embedding program that
// stops and starts servers (tests, a supervisor) would otherwise pile them
// up. It exercises what starts goroutines: proxied requests, the Plaid
// routes, verified webhooks forwarded to a tenant's app.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	// Registered first, so it runs after every other cleanup (servers,
	// emulator, store), and only sees what they left behind; goroutines
	// already running (other tests', paused) are not this test's.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, before,
			// fasthttp's own: the process-wide date updater and dialer
			// cache cleaner, and the idle cleaners of a worker pool and a
			// client, which sleep out their period (10 or 30 s) and then
			// end, having nothing left to clean.
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		)
	})
	var open atomic.Int64 // the upstream's connections not yet closed
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	rv := &receiver{}
	app := newReceiver(t, rv)
	e := startEnv(t, envConfig{upstream: up.URL, forward: []Destination{{Name: "app", URL: app.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}}})

	for range 5 {
		if r := e.do("GET", "t1.test", "/hello", "alice-key", nil); r.status != 200 {
			t.Fatalf("proxied GET = %d %s", r.status, r.body)
		}
	}
	if r := e.link("t1.test", "alice-key", "ins_109508"); r.status != 200 {
		t.Fatalf("exchange = %d %s", r.status, r.body)
	}
	ws := signWebhooks(t, e.sim, 20)
	postWebhooks(t, e.addr, ws, 4)
	eventually(t, "the webhooks forwarded", func() bool { _, done, _ := rv.counts(); return done >= len(ws) })
	e.stop()
	// Idle upstream connections are closed by Shutdown, not left to their
	// idle timeout (30 s).
	eventually(t, "the upstream's connections closed after Shutdown", func() bool { return open.Load() == 0 })
}
