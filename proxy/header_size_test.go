package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// bigHeaderUpstream answers with a Content-Security-Policy as long as the
// query's csp asks, and says how long the Cookie it got was.
func bigHeaderUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("csp"))
		w.Header().Set("Content-Security-Policy", "default-src 'self' "+strings.Repeat("a", n))
		w.Header().Set("X-Cookie-Len", strconv.Itoa(len(r.Header.Get("Cookie"))))
		w.Write([]byte("ok"))
	}))
	t.Cleanup(up.Close)
	return up
}

// The third trust pass: fasthttp's default 4 KiB buffers answered a browser
// with a few KiB of cookies 400 malformed_request, and turned an app's
// answer with a long Content-Security-Policy into a 502. Requests may carry
// limits.max_header_bytes (16 KiB) of line and headers, 431
// headers_too_large beyond; an upstream answer's headers up to 64 KiB.
func TestLargeHeadersPassBothWays(t *testing.T) {
	t.Parallel()
	up := bigHeaderUpstream(t)
	e := startEnv(t, envConfig{upstream: up.URL})

	cookie := "session=" + strings.Repeat("s", 10<<10)
	r := e.do("GET", "t1.test", "/x", "alice-key", nil, "Cookie", cookie)
	if r.status != 200 || r.hdr.Get("X-Cookie-Len") != strconv.Itoa(len(cookie)) {
		t.Fatalf("10 KiB of cookies: %d %s (upstream got a Cookie of %s bytes); want 200 and all of it", r.status, r.body, r.hdr.Get("X-Cookie-Len"))
	}

	r = e.do("GET", "t1.test", "/x?csp=20480", "alice-key", nil)
	if r.status != 200 || len(r.hdr.Get("Content-Security-Policy")) < 20<<10 {
		t.Fatalf("an upstream answer with a 20 KiB header: %d %s; want 200 with the header", r.status, r.body)
	}

	r = e.do("GET", "t1.test", "/x", "alice-key", nil, "Cookie", "session="+strings.Repeat("s", 20<<10))
	if r.status != 431 || r.errCode(t) != "headers_too_large" {
		t.Fatalf("20 KiB of cookies: %d %s; want 431 headers_too_large", r.status, r.body)
	}
}

// limits.max_header_bytes is the bound.
func TestMaxHeaderBytesIsTheBound(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{upstream: bigHeaderUpstream(t).URL, options: func(o *Options) { o.MaxHeaderBytes = 64 << 10 }})
	if r := e.do("GET", "t1.test", "/x", "alice-key", nil, "Cookie", "session="+strings.Repeat("s", 40<<10)); r.status != 200 {
		t.Fatalf("40 KiB of cookies under a 64 KiB bound: %d %s", r.status, r.body)
	}
}

// A WebSocket upgrade whose 101 carries large headers (a session cookie
// set at the upgrade) is tunnelled too; its reader was 4 KiB.
func TestWebSocketUpgradeWithLargeHeaders(t *testing.T) {
	t.Parallel()
	cookie := "s=" + strings.Repeat("c", 10<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", cookie)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, b, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, b)
		}
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, res, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("upgrade with a 10 KiB Set-Cookie: %v (%v)", err, res)
	}
	defer c.CloseNow()
	if res.Header.Get("Set-Cookie") != cookie {
		t.Errorf("Set-Cookie of the 101: %d bytes, want %d", len(res.Header.Get("Set-Cookie")), len(cookie))
	}
	echoOnce(ctx, t, c, "hello")
}
