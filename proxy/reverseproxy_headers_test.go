package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// recorder is a real upstream on 127.0.0.1 that records the request line
// and every header it received, and answers with the headers in respHdr.
type recorder struct {
	mu   sync.Mutex
	hits int
	uri  string
	hdr  http.Header
}

func newRecorder(t *testing.T, respHdr ...string) (*recorder, string) {
	t.Helper()
	rec := &recorder{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.hits++
		rec.uri, rec.hdr = r.RequestURI, r.Header.Clone()
		rec.mu.Unlock()
		for i := 0; i+1 < len(respHdr); i += 2 {
			w.Header().Add(respHdr[i], respHdr[i+1])
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	return rec, up.URL
}

func (r *recorder) seen() (int, string, http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits, r.uri, r.hdr.Clone()
}

// rawDo writes a hand-made request (header names net/http would refuse to
// send) and reads the answer.
func rawDo(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func errCodeOf(t *testing.T, body string) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("body %q is not our JSON error: %v", body, err)
	}
	return e.Error.Code
}

// Issue 9.1, 9.3: no client header that folds ('_', '-', '.' alike,
// any case) to an identity or forwarding header reaches the upstream.
func TestReverseProxyStripsHeaderNameVariants(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{upstream: upURL})
	forged := []string{
		"X_Safeclose_User", "x.safeclose.user", "X-SAFECLOSE_USER", "X_Safeclose_Tenant",
		"X-Safeclose-Claim_Role", "x_safeclose_claim_role", "X-Safeclose-Anything",
		"X_Forwarded_For", "X-Forwarded_Host", "x.forwarded.proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"Forwarded", "X-Real-IP", "X_Real_Ip", "X-Original-URL", "X_Original_Url", "X-Rewrite-URL", "X.Rewrite.Url",
		"True-Client-IP", "X-Client-IP",
	}
	var b strings.Builder
	b.WriteString("GET /app HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\nX-Kept_Header: yes\r\n")
	for _, n := range forged {
		b.WriteString(n + ": 10.6.6.6, mallory\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	res, body := rawDo(t, e.addr, b.String())
	if res.StatusCode != 200 {
		t.Fatalf("proxied = %d %s", res.StatusCode, body)
	}
	_, _, got := rec.seen()
	for name, vals := range got {
		for _, v := range vals {
			if strings.Contains(v, "mallory") || strings.Contains(v, "10.6.6.6") {
				t.Errorf("upstream got forged %s: %q", name, v)
			}
		}
	}
	want := map[string]string{
		"X-Safeclose-User": "alice", "X-Safeclose-Tenant": "t1", "X-Forwarded-For": "127.0.0.1",
		"X-Forwarded-Host": "t1.test", "X-Forwarded-Proto": "http",
		"Forwarded": "for=127.0.0.1;host=t1.test;proto=http", "X-Kept_header": "yes",
	}
	for k, v := range want {
		if g := got.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("upstream %s = %q, want [%q]", k, g, v)
		}
	}
}

// Issue 9.1: a header name outside the RFC 9110 token set is refused.
func TestReverseProxyRefusesNonTokenHeaderNames(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{upstream: upURL})
	for _, n := range []string{"X(Safeclose)User", "X-Safeclose-User\"", "X@User", "X[a]", "X{a}", "X/a", "X\\a"} {
		req := "GET /app HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n" + n + ": root\r\nConnection: close\r\n\r\n"
		res, body := rawDo(t, e.addr, req)
		// fasthttp's parser already refuses most (malformed_request);
		// sanitizeRequest refuses whatever gets past it (invalid_header).
		if c := errCodeOf(t, body); res.StatusCode != 400 || (c != "invalid_header" && c != "malformed_request") {
			t.Errorf("header name %q: %d %s, want 400", n, res.StatusCode, body)
		}
	}
	if hits, _, _ := rec.seen(); hits != 0 {
		t.Errorf("%d refused requests reached the upstream", hits)
	}
}

// RFC 9110 §5.5: a header value holding a NUL is refused before routing,
// so no plugin ever sees one. The SDKs count on it: a single request
// header value is returned whole, unscanned (issue 12; plugins/sdk,
// plugins/sdk-as headerBytes).
func TestReverseProxyRefusesNULInHeaderValues(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{upstream: upURL})
	for _, h := range []string{"Authorization: Bearer alice-key\x00", "Authorization: Bearer \x00alice-key", "X-A: a\x00b"} {
		req := "GET /app HTTP/1.1\r\nHost: t1.test\r\n" + h + "\r\nConnection: close\r\n\r\n"
		res, body := rawDo(t, e.addr, req)
		if c := errCodeOf(t, body); res.StatusCode != 400 || c != "malformed_request" {
			t.Errorf("%q: %d %s, want 400 malformed_request", h, res.StatusCode, body)
		}
	}
	if hits, _, _ := rec.seen(); hits != 0 {
		t.Errorf("%d refused requests reached the upstream", hits)
	}
}

// Issue 9.1: sanitizeRequest itself refuses a non-token name that reaches
// it (set programmatically, as a future parser or a trailer could).
func TestSanitizeRequestRefusesNonToken(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"X Safeclose User", "X(a)", "X\xc3\xa9", "X:a", "X\"a"} {
		var h fasthttp.RequestHeader
		h.Set("X-Ok", "1")
		h.Set(n, "root")
		err := sanitizeRequest(&h)
		if st, d := classify(err); st != 400 || d.Code != "invalid_header" {
			t.Errorf("sanitizeRequest(%q) = %v (%d %s), want 400 invalid_header", n, err, st, d.Code)
		}
	}
	var h fasthttp.RequestHeader
	h.Set("X-Ok", "1")
	h.Set("X_Safeclose_User", "root")
	h.Set("x.forwarded.for", "10.0.0.1")
	if err := sanitizeRequest(&h); err != nil || h.Peek("X_Safeclose_User") != nil || h.Peek("x.forwarded.for") != nil || string(h.Peek("X-Ok")) != "1" {
		t.Errorf("sanitizeRequest = %v; headers left: %s", err, h.Header())
	}
}

// Issue 9.2: Connection and the hop-by-hop headers are never forwarded;
// Connection tokens naming headers Safeclose sets are ignored; the same
// rules apply to the upstream's response.
func TestReverseProxyConnectionTokens(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t,
		"Connection", "X-Up-Hop, Content-Type", "X-Up-Hop", "secret", "Keep-Alive", "timeout=5",
		"Proxy-Connection", "keep-alive", "Upgrade", "h2c", "X-Up-Kept", "yes", "Keep_Alive", "variant")
	e := startEnv(t, envConfig{upstream: upURL})
	req := "GET /app HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n" +
		"Connection: X-Safeclose-User, X-Forwarded-For\r\nConnection: x-hop, forwarded, X-Safeclose-Tenant, Content-Length\r\n" +
		"X-Hop: 1\r\nX-Other: kept\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\n" +
		"Proxy-Connection: keep-alive\r\nProxy_Connection: keep-alive\r\nTransfer_Encoding: chunked\r\n\r\n"
	res, body := rawDo(t, e.addr, req)
	if res.StatusCode != 200 || body != "ok" {
		t.Fatalf("proxied = %d %q", res.StatusCode, body)
	}
	_, _, got := rec.seen()
	for _, n := range []string{"Connection", "X-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade", "Proxy-Connection", "Proxy_connection", "Transfer_encoding"} {
		if v := got.Values(n); len(v) > 0 {
			t.Errorf("upstream got hop-by-hop %s: %q", n, v)
		}
	}
	for k, v := range map[string]string{
		"X-Safeclose-User": "alice", "X-Safeclose-Tenant": "t1", "X-Forwarded-For": "127.0.0.1",
		"Forwarded": "for=127.0.0.1;host=t1.test;proto=http", "X-Other": "kept",
	} {
		if g := got.Get(k); g != v {
			t.Errorf("upstream %s = %q, want %q (a Connection token must not remove it)", k, g, v)
		}
	}
	for _, n := range []string{"X-Up-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade", "Keep_alive"} {
		if v := res.Header.Values(n); len(v) > 0 {
			t.Errorf("client got upstream hop-by-hop %s: %q", n, v)
		}
	}
	if c := res.Header.Get("Connection"); c != "" && !strings.EqualFold(c, "close") && !strings.EqualFold(c, "keep-alive") {
		t.Errorf("client got upstream Connection %q", c)
	}
	if res.Header.Get("X-Up-Kept") != "yes" {
		t.Errorf("end-to-end response header dropped: %v", res.Header)
	}
}

// Issue 9.3: Forwarded quotes and brackets an IPv6 client and quotes a
// host with a port.
func TestSetForwarding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, remote, host, want, xff string
	}{
		{"ipv4", "192.0.2.60:5000", "t1.test", "for=192.0.2.60;host=t1.test;proto=http", "192.0.2.60"},
		{"ipv6", "[2001:db8::1]:443", "t1.test:8080", `for="[2001:db8::1]";host="t1.test:8080";proto=http`, "2001:db8::1"},
		{"mapped", "[::ffff:10.0.0.1]:80", "a.test", "for=10.0.0.1;host=a.test;proto=http", "10.0.0.1"},
		{"ipv4 in 16 bytes", "203.0.113.255:1", "a.test", "for=203.0.113.255;host=a.test;proto=http", "203.0.113.255"},
		{"ipv4 zeros", "0.0.0.0:1", "a.test", "for=0.0.0.0;host=a.test;proto=http", "0.0.0.0"},
		{"ipv6 loopback", "[::1]:1", "a.test", `for="[::1]";host=a.test;proto=http`, "::1"},
		{"quote in host", "192.0.2.1:1", `t1.test:"x\`, `for=192.0.2.1;host="t1.test:\"x\\";proto=http`, "192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var req fasthttp.Request
			req.SetRequestURI("/x")
			req.Header.SetHost(tt.host)
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.remote)), nil)
			if tt.name == "ipv4 in 16 bytes" { // as an IPv6 listener reports an IPv4 client
				a := ctx.RemoteAddr().(*net.TCPAddr)
				ctx.Init(&req, &net.TCPAddr{IP: a.IP.To16(), Port: a.Port}, nil)
			}
			setForwarding(&ctx, &ctx.Request.Header)
			h := &ctx.Request.Header
			if g := string(h.Peek("Forwarded")); g != tt.want {
				t.Errorf("Forwarded = %s, want %s", g, tt.want)
			}
			if g := string(h.Peek("X-Forwarded-For")); g != tt.xff {
				t.Errorf("X-Forwarded-For = %s, want %s", g, tt.xff)
			}
			if g := string(h.Peek("X-Forwarded-Host")); g != tt.host {
				t.Errorf("X-Forwarded-Host = %s, want %s", g, tt.host)
			}
		})
	}
}

// TestCanonicalKeys: the keys set with SetCanonical are what fasthttp's
// own normalisation makes of them, so Peek, Del and a client's copy (which
// sanitizeRequest removes) all meet the header Safeclose sets; one not in
// canonical form would be a second, differently spelled header.
func TestCanonicalKeys(t *testing.T) {
	t.Parallel()
	for _, k := range [][]byte{keyXForwardedFor, keyXForwardedHost, keyXForwardedProto, keyForwarded, keyRequestID, keyUser, keyTenant} {
		var h fasthttp.RequestHeader
		h.Set(strings.ToLower(string(k)), "client")
		h.SetCanonical(k, []byte("safeclose"))
		n := 0
		for name, v := range h.All() {
			if strings.EqualFold(string(name), string(k)) {
				n++
				if string(name) != string(k) || string(v) != "safeclose" {
					t.Errorf("%s: got %s: %s", k, name, v)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d headers, want 1", k, n)
		}
	}
}

// A client's Connection token naming X-Request-Id does not remove the id
// Safeclose sets (and logs): the upstream gets the id the client is
// answered with.
func TestConnectionTokenKeepsRequestID(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{upstream: upURL})
	req := "GET /app HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n" +
		"Connection: close, X-Request-Id\r\n\r\n"
	res, body := rawDo(t, e.addr, req)
	if res.StatusCode != 200 {
		t.Fatalf("proxied = %d %s", res.StatusCode, body)
	}
	_, _, got := rec.seen()
	if res.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id in the answer")
	}
	if id := res.Header.Get("X-Request-Id"); got.Get("X-Request-Id") != id {
		t.Errorf("client was answered with request id %q, the upstream got %q (dropped by a Connection token)", id, got.Get("X-Request-Id"))
	}
}
