package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// idUpstream answers with every X-Request-Id header (and name variant) it got.
func idUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := map[string][]string{}
		for k, v := range r.Header {
			if strings.EqualFold(strings.NewReplacer("_", "-", ".", "-").Replace(k), "x-request-id") {
				got[k] = v
			}
		}
		w.Header().Set("X-Request-Id", "set-by-upstream")
		_ = json.NewEncoder(w).Encode(got)
	}))
	t.Cleanup(up.Close)
	return up
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Issue 13.2: every request gets an X-Request-Id, generated unless a
// trusted one arrives, passed upstream (alone) and set on the response.
func TestRequestID(t *testing.T) {
	t.Parallel()
	up := idUpstream(t)
	plain := startEnv(t, envConfig{upstream: up.URL})
	trusting := startEnv(t, envConfig{upstream: up.URL, optsFn: func(o *Options) { o.TrustRequestID = true }})
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		e    *testEnv
		hdr  []string
		keep string // the incoming id that must be kept; "" means a new one
	}{
		{"none", plain, nil, ""},
		{"untrusted", plain, []string{"X-Request-Id", "client-chosen"}, ""},
		{"trusted", trusting, []string{"X-Request-Id", "lb-1234:abc/def=="}, "lb-1234:abc/def=="},
		{"trusted but malformed", trusting, []string{"X-Request-Id", "<script>"}, ""},
		{"trusted but too long", trusting, []string{"X-Request-Id", long}, ""},
		{"trusted but twice", trusting, []string{"X-Request-Id", "a1", "X-Request-Id", "a2"}, ""},
		{"variant", trusting, []string{"X-Request-Id", "ok-1", "X_Request_Id", "forged"}, ""},
		{"variant untrusted", plain, []string{"X_Request_Id", "forged"}, ""},
	}
	for _, tt := range tests {
		r := tt.e.do("GET", "t1.test", "/app", "alice-key", nil, tt.hdr...)
		id := r.hdr.Get("X-Request-Id")
		if r.status != 200 || len(r.hdr.Values("X-Request-Id")) != 1 {
			t.Errorf("%s: %d %v %s", tt.name, r.status, r.hdr.Values("X-Request-Id"), r.body)
			continue
		}
		if tt.keep != "" && id != tt.keep {
			t.Errorf("%s: response id %q, want the incoming %q kept", tt.name, id, tt.keep)
		}
		if tt.keep == "" && !hexID.MatchString(id) {
			t.Errorf("%s: response id %q, want a new 32-hex-digit id", tt.name, id)
		}
		var seen map[string][]string
		if err := json.Unmarshal(r.body, &seen); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || len(seen["X-Request-Id"]) != 1 || seen["X-Request-Id"][0] != id {
			t.Errorf("%s: upstream got %v, want only X-Request-Id: %s", tt.name, seen, id)
		}
	}
	a := plain.do("GET", "t1.test", "/app", "alice-key", nil).hdr.Get("X-Request-Id")
	b := plain.do("GET", "t1.test", "/app", "alice-key", nil).hdr.Get("X-Request-Id")
	if a == b {
		t.Errorf("two requests got the same id %q", a)
	}
	// Answers Safeclose makes itself carry one too.
	for _, r := range []resp{
		plain.do("GET", "nobody.test", "/app", "", nil),
		plain.do("GET", "t1.test", "/app", "wrong-key", nil),
		plain.do("GET", "t1.test", "/api/plaid/status", "alice-key", nil),
	} {
		if !hexID.MatchString(r.hdr.Get("X-Request-Id")) {
			t.Errorf("%d answer has X-Request-Id %q", r.status, r.hdr.Get("X-Request-Id"))
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(l.b.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Issue 13.2: one access-log line per request with the documented fields,
// and never a token, cookie or query string.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	var buf lockedBuffer
	e := startEnv(t, envConfig{upstream: up.URL, optsFn: func(o *Options) {
		o.AccessLog = &buf
	}})
	r1 := e.do("GET", "t1.test", "/app/./orders?access_token=QUERYSECRET", "alice-key", nil, "Cookie", "session=COOKIESECRET")
	r2 := e.do("POST", "t1.test", "/api/plaid/link-token", "bob-key", nil)
	r3 := e.do("GET", "nobody.test", "/x?k=QUERYSECRET", "", nil, "X-Safeclose-User", "forged")
	r4 := e.do("GET", "t1.test", "/app", "", nil, "Authorization", "Basic QkFTSUNTRUNSRVQ=")
	if r1.status != 200 || r2.status != 200 || r3.status != 404 || r4.status != 401 {
		t.Fatalf("statuses %d %d %d %d", r1.status, r2.status, r3.status, r4.status)
	}
	e.srv.access.sync()
	lines := buf.lines(t)
	if len(lines) != 4 {
		t.Fatalf("got %d access-log lines, want 4:\n%s", len(lines), buf.b.String())
	}
	want := []map[string]any{
		{"msg": "request", "tenant": "t1", "user": "alice", "method": "GET", "path": "/app/orders", "route": "proxy",
			"status": 200.0, "bytes": float64(len(r1.body)), "upstream": up.URL, "request_id": r1.hdr.Get("X-Request-Id"), "client": "127.0.0.1"},
		{"tenant": "t1", "user": "bob", "method": "POST", "path": "/api/plaid/link-token", "route": "/api/plaid/link-token",
			"status": 200.0, "upstream": "", "request_id": r2.hdr.Get("X-Request-Id")},
		{"tenant": "", "user": "", "path": "/x", "status": 404.0, "request_id": r3.hdr.Get("X-Request-Id"), "client": "127.0.0.1"},
		{"tenant": "t1", "user": "", "status": 401.0, "route": "proxy"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if d, ok := lines[i]["duration_ms"].(float64); !ok || d < 0 {
			t.Errorf("line %d: duration_ms = %v", i, lines[i]["duration_ms"])
		}
	}
	for _, secret := range []string{"alice-key", "bob-key", "COOKIESECRET", "QUERYSECRET", "QkFTSUNTRUNSRVQ", "forged", "access_token"} {
		if strings.Contains(buf.b.String(), secret) {
			t.Errorf("access log contains %q:\n%s", secret, buf.b.String())
		}
	}
}

// Issue 13.2: latency histograms per tenant and route in /metrics.
func TestRequestDurationHistogram(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	e := startEnv(t, envConfig{upstream: up.URL})
	e.do("GET", "t1.test", "/app", "alice-key", nil)
	e.do("GET", "t1.test", "/app", "alice-key", nil)
	e.do("GET", "t2.test", "/api/plaid/status", "carol-key", nil)
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, w := range []string{
		`safeclose_request_duration_seconds_count{route="proxy",tenant="t1"} 2`,
		`safeclose_request_duration_seconds_count{route="/api/plaid/status",tenant="t2"} 1`,
		`safeclose_request_duration_seconds_bucket{route="proxy",tenant="t1",le="+Inf"} 2`,
	} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
}

// The latency is measured from the start of handle (monoNow; the server
// runs with LazyRequestTime, so RequestCtx.Time is not read): a request
// whose upstream takes 30 ms adds at least 30 ms to the histogram's sum,
// and not the time since the process started.
func TestRequestDurationCoversHandler(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	e.do("GET", "t1.test", "/app", "alice-key", nil)
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := regexp.MustCompile(`safeclose_request_duration_seconds_sum\{route="proxy",tenant="t1"\} (\S+)`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("/metrics has no proxy duration sum:\n%s", rec.Body.String())
	}
	sum, err := strconv.ParseFloat(m[1], 64)
	if err != nil || sum < 0.030 || sum > 3600 {
		t.Errorf("duration sum = %q (%v), want the request's time: at least the upstream's 30 ms", m[1], err)
	}
}
