package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// trailerUpstream records the request headers and, after reading the body,
// the trailer fields it received.
type trailerUpstream struct {
	mu      sync.Mutex
	hdr     http.Header
	trailer http.Header
	raw     string
}

func newTrailerUpstream(t *testing.T) (*trailerUpstream, string) {
	t.Helper()
	u := &trailerUpstream{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.hdr, u.trailer, u.raw = r.Header.Clone(), r.Trailer.Clone(), string(b)
		u.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(ts.Close)
	return u, ts.URL
}

// A client's chunked body ends with a trailer section. fasthttp reads it
// into the request header when the body stream ends and would write it
// after the last chunk; sanitizeRequest ran on the header section before it
// arrived, so identity and forwarding fields forged there (X-Safeclose-User,
// a claim, Forwarded, True-Client-IP; fasthttp itself refuses only
// X-Forwarded-* and a few others) must be dropped (dropTrailers), here
// unannounced on a streamed body.
func TestHostileTrailerStreamed(t *testing.T) {
	t.Parallel()
	up, url := newTrailerUpstream(t)
	e := startEnv(t, envConfig{upstream: url})
	forged := []string{
		"X-Safeclose-User: mallory",
		"X-Safeclose-Tenant: t2",
		"X-Safeclose-Claim-Role: admin",
		"X_Safeclose_User: mallory",
		"Forwarded: for=10.6.6.6",
		"True-Client-IP: 10.6.6.6",
		"X-Client-IP: 10.6.6.6",
	}
	req := "POST /app HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n" +
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
		"5\r\nhello\r\n0\r\n" + strings.Join(forged, "\r\n") + "\r\n\r\n"
	res, body := rawDo(t, e.addr, req)
	if res.StatusCode != 200 {
		t.Fatalf("proxied = %d %s", res.StatusCode, body)
	}
	up.mu.Lock()
	hdr, tr, raw := up.hdr, up.trailer, up.raw
	up.mu.Unlock()
	t.Logf("upstream body %q, headers %v, trailers %v", raw, hdr, tr)
	if raw != "hello" {
		t.Errorf("upstream body = %q, want hello", raw)
	}
	for name, vals := range tr {
		for _, v := range vals {
			if strings.Contains(v, "mallory") || strings.Contains(v, "admin") || strings.Contains(v, "10.6.6.6") || v == "t2" {
				t.Errorf("upstream got forged trailer %s: %q", name, v)
			}
		}
	}
	for name, vals := range hdr {
		for _, v := range vals {
			if strings.Contains(v, "mallory") || strings.Contains(v, "10.6.6.6") {
				t.Errorf("upstream got forged header %s: %q", name, v)
			}
		}
	}
}

// trailerForgeries are identity/forwarding fields a client sends in the
// trailer section of a chunked body; the Trailer header announces them.
var trailerForgeries = []string{
	"X-Safeclose-Claim-Admin: true",
	"X-Safeclose-Claim-Role: admin",
	"X-Safeclose-User: mallory",
	"X_Safeclose_User: mallory",
	"X-Original-URL: /admin",
	"True-Client-IP: 10.6.6.6",
}

func trailerRequest(host, auth string) string {
	return "POST /app HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
		"Trailer: X-Safeclose-Claim-Admin, X-Safeclose-Claim-Role, X-Safeclose-User, X_Safeclose_User, X-Original-URL, True-Client-IP\r\n" +
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
		"5\r\nhello\r\n0\r\n" + strings.Join(trailerForgeries, "\r\n") + "\r\n\r\n"
}

// sendTrailerRequest sends req, which must be proxied with its body
// whole and none of trailerForgeries, in either section, at the upstream.
func sendTrailerRequest(t *testing.T, addr string, up *trailerUpstream, req string) {
	t.Helper()
	res, body := rawDo(t, addr, req)
	if res.StatusCode != 200 {
		t.Fatalf("proxied = %d %s", res.StatusCode, body)
	}
	up.mu.Lock()
	hdr, tr, raw := up.hdr, up.trailer, up.raw
	up.mu.Unlock()
	t.Logf("upstream headers %v; trailers %v", hdr, tr)
	if raw != "hello" {
		t.Errorf("upstream body = %q, want hello", raw)
	}
	checkNoForgedHeaders(t, hdr, tr)
}

func checkNoForgedHeaders(t *testing.T, hdr, tr http.Header) {
	t.Helper()
	bad := func(v string) bool {
		return strings.Contains(v, "mallory") || strings.Contains(v, "admin") || v == "true" || strings.Contains(v, "10.6.6.6")
	}
	for name, vals := range hdr {
		for _, v := range vals {
			if bad(v) {
				t.Errorf("upstream got forged HEADER %s: %q", name, v)
			}
		}
	}
	for name, vals := range tr {
		for _, v := range vals {
			if bad(v) {
				t.Errorf("upstream got forged trailer %s: %q", name, v)
			}
		}
	}
}

// A tenant whose auth plugin holds the body capability has its request
// bodies read whole before authentication (bufferBody), trailer section
// included. Removing the hop-by-hop Trailer header (stripHopByHop) makes
// fasthttp move every trailer field into the header section, so before
// dropTrailers the forged fields reached the upstream as real headers: a
// claim the plugin never set, X-Original-URL, True-Client-IP, and the
// X_Safeclose_User variant a CGI upstream folds onto X-Safeclose-User.
func TestHostileTrailerBufferedBody(t *testing.T) {
	t.Parallel()
	up, url := newTrailerUpstream(t)
	eng := pluginEngine(t)
	p, err := eng.Load(t.Context(), hostabi.PluginOptions{
		Tenant: "tb", Name: "allow", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "allow"), PoolSize: 2,
		Timeout: 5 * time.Second, MemoryLimitPages: 256, Caps: hostabi.Capabilities{Body: true}, BodyLimit: 1024,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	e := startEnv(t, envConfig{upstream: url, tenantsFn: func(base, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("tb", p, url, plaidURL)}
	}})
	sendTrailerRequest(t, e.addr, up, trailerRequest("tb.test", "X-User: alice\r\n"))
}

// The same announced request to an API-key tenant (body streamed).
func TestHostileTrailerAnnouncedStreamed(t *testing.T) {
	t.Parallel()
	up, url := newTrailerUpstream(t)
	e := startEnv(t, envConfig{upstream: url})
	sendTrailerRequest(t, e.addr, up, trailerRequest("t1.test", "Authorization: Bearer alice-key\r\n"))
}

// The access log's user is Header.Peek(X-Safeclose-User), and fasthttp's
// Peek answers from the trailer section when the header section lacks the
// name. A request whose body is read whole (a Plaid route, a webhook, a
// body-reading plugin's tenant) and that fails authentication has no user
// of its own, so before dropTrailers a trailer "X-Safeclose-User: bob" put
// bob's name on the attacker's failed request in the access log.
func TestHostileTrailerAccessLogUser(t *testing.T) {
	t.Parallel()
	var logs lockedBuf
	e := startEnv(t, envConfig{optsFn: func(o *Options) { o.AccessLog = &logs }})
	req := "POST /api/plaid/exchange HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer wrong-key\r\n" +
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
		"2\r\n{}\r\n0\r\nX-Safeclose-User: bob-the-victim\r\n\r\n"
	res, body := rawDo(t, e.addr, req)
	if res.StatusCode != 401 {
		t.Fatalf("exchange with a wrong key = %d %s, want 401", res.StatusCode, body)
	}
	e.srv.access.sync()
	out := logs.String()
	t.Logf("access log: %s", out)
	if !strings.Contains(out, "/api/plaid/exchange") {
		t.Fatalf("no access log line for the request: %q", out)
	}
	if strings.Contains(out, "bob-the-victim") {
		t.Errorf("a client-sent trailer named the user in the access log")
	}
}
