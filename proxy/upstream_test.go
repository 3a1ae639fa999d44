package proxy

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tenantsWith returns the default tenants with t1 changed by fn.
func tenantsWith(t *testing.T, fn func(*Tenant)) func(base, plaidURL string) []Tenant {
	return func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, base[len("http://"):], plaidURL, "", nil)
		fn(&ts[0])
		return ts
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// Issue 13.3: a pool with one target killed mid-load: after the kill no
// idempotent request fails (connection failures are retried on the other
// target, and the dead one is ejected).
func TestUpstreamPoolTargetKilled(t *testing.T) {
	t.Parallel()
	var hitsA, hitsB atomic.Int32
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsA.Add(1); w.Write([]byte("a")) }))
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsB.Add(1); w.Write([]byte("b")) }))
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
		tn.Upstream, tn.Upstreams = a.URL, []string{b.URL}
	})})

	var killed atomic.Bool
	var failedAfter, failedBefore atomic.Int32
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				after := killed.Load()
				method := "GET"
				if (w+i)%3 == 0 {
					method = "DELETE"
				}
				r := e.do(method, "t1.test", "/load", "alice-key", nil)
				if r.status >= 500 {
					if after {
						failedAfter.Add(1)
					} else {
						failedBefore.Add(1)
					}
				}
				if w == 0 && i == 20 {
					a.CloseClientConnections()
					a.Close()
					killed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if n := failedAfter.Load(); n != 0 {
		t.Errorf("%d idempotent requests failed after the target was killed", n)
	}
	if hitsA.Load() == 0 || hitsB.Load() == 0 {
		t.Errorf("round-robin: a=%d b=%d, want both used", hitsA.Load(), hitsB.Load())
	}
	t1 := e.srv.table.Load().tenants["t1"]
	tg := t1.upstream.targets[0]
	tg.mu.Lock()
	failures := tg.failures
	tg.mu.Unlock()
	if failures == 0 {
		t.Errorf("killed target not ejected")
	}
	t.Logf("5xx before the kill: %d", failedBefore.Load())
}

// Issue 13.3: a non-idempotent request is not retried: with the first
// target dead, a POST that picks it fails with 502; a GET goes on to the
// live target.
func TestUpstreamRetryIdempotentOnly(t *testing.T) {
	t.Parallel()
	var posts atomic.Int32
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			posts.Add(1)
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(live.Close)
	dead := deadAddr(t)
	e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
		tn.Upstream, tn.Upstreams = dead, []string{live.URL}
	})})
	p := e.srv.table.Load().tenants["t1"].upstream
	p.next.Store(0) // the next pick is the dead target
	if r := e.do("POST", "t1.test", "/x", "alice-key", []byte(`{}`)); r.status != 502 || r.errCode(t) != "upstream_unavailable" {
		t.Errorf("POST to a dead target = %d %s, want 502", r.status, r.body)
	}
	p.targets[0].mu.Lock()
	p.targets[0].until = time.Time{} // forget the ejection
	p.targets[0].mu.Unlock()
	p.next.Store(0)
	if r := e.do("GET", "t1.test", "/x", "alice-key", nil); r.status != 200 {
		t.Errorf("GET with a dead first target = %d %s, want 200 (retried)", r.status, r.body)
	}
	if posts.Load() != 0 {
		t.Errorf("the failed POST was retried on the live target")
	}
}

// Issue 13.3: a slow upstream answers 504 upstream_timeout after the
// tenant's response_header timeout.
func TestUpstreamResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		w.Write([]byte("late"))
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
		tn.Upstream = up.URL
		tn.UpstreamTimeouts = UpstreamTimeouts{ResponseHeader: 200 * time.Millisecond}
	})})
	r := e.do("GET", "t1.test", "/slow", "alice-key", nil)
	if r.status != 504 || r.errCode(t) != "upstream_timeout" {
		t.Errorf("slow upstream = %d %s, want 504 upstream_timeout", r.status, r.body)
	}
}

// Issue 13.3: https upstreams are verified: against the tenant's CA pool
// when given, else the system roots (which do not know the test CA).
func TestUpstreamTLSVerification(t *testing.T) {
	t.Parallel()
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %v", r.TLS != nil)
	}))
	t.Cleanup(up.Close)
	cas := x509.NewCertPool()
	cas.AddCert(up.Certificate())
	for _, tt := range []struct {
		name   string
		cas    *x509.CertPool
		status int
	}{{"ca_file", cas, 200}, {"system roots", nil, 502}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
				tn.Upstream, tn.UpstreamCAs = up.URL, tt.cas
			})})
			r := e.do("GET", "t1.test", "/", "alice-key", nil)
			if r.status != tt.status || (tt.status == 200 && string(r.body) != "tls true") {
				t.Errorf("https upstream = %d %s, want %d", r.status, r.body, tt.status)
			}
		})
	}
}

// Issue 13.3: the forwarding client reuses connections, streamed bodies
// included (a body read to its end hands the connection back).
func TestUpstreamConnectionReuse(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write([]byte("part one "))
			w.(http.Flusher).Flush()
		}
		w.Write([]byte("done"))
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	for i := range 20 {
		path := "/plain"
		if i%2 == 0 {
			path = "/chunked"
		}
		if r := e.do("GET", "t1.test", path, "alice-key", nil); r.status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
	}
	if r := e.do("HEAD", "t1.test", "/plain", "alice-key", nil); r.status != 200 || r.hdr.Get("Content-Length") != "4" {
		t.Errorf("HEAD = %d, Content-Length %q, want 200 and 4", r.status, r.hdr.Get("Content-Length"))
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("21 sequential requests opened %d upstream connections, want reuse", n)
	}
}

// Issue 13.3: the access log names the pool member that answered each
// request, not the pool.
func TestAccessLogNamesPoolMember(t *testing.T) {
	t.Parallel()
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) }))
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) }))
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	var buf lockedBuffer
	e := startEnv(t, envConfig{
		tenantsFn: tenantsWith(t, func(tn *Tenant) { tn.Upstreams = []string{a.URL, b.URL} }),
		optsFn:    func(o *Options) { o.AccessLog = &buf },
	})
	member := map[string]string{"a": a.URL, "b": b.URL}
	var bodies []string
	for range 4 {
		r := e.do("GET", "t1.test", "/who", "alice-key", nil)
		if r.status != 200 {
			t.Fatalf("GET = %d %s", r.status, r.body)
		}
		bodies = append(bodies, string(r.body))
	}
	e.srv.access.sync()
	lines := buf.lines(t)
	if len(lines) != len(bodies) {
		t.Fatalf("got %d access-log lines, want %d", len(lines), len(bodies))
	}
	seen := map[string]bool{}
	for i, l := range lines {
		if want := member[bodies[i]]; l["upstream"] != want {
			t.Errorf("line %d: upstream = %v, want %s (the member that answered %q)", i, l["upstream"], want, bodies[i])
		}
		seen[bodies[i]] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("round-robin over 4 requests reached %v, want both members", seen)
	}
}
