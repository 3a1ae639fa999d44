package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// decodeLine parses one access log line, which must be a single JSON object
// ending in a newline.
func decodeLine(t testing.TB, line []byte) map[string]any {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("line %q is not one line", line)
	}
	if !json.Valid(line) {
		t.Fatalf("line %q is not valid JSON", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return m
}

// jsonValue is what encoding/json makes of r's fields: the reference the
// hand-rolled encoder must match.
func jsonValue(t testing.TB, r *accessRecord) map[string]any {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"time": r.time.Format(time.RFC3339Nano), "level": "INFO", "msg": "request", "component": "access",
		"request_id": string(r.requestID), "tenant": r.tenant, "user": string(r.user), "method": string(r.method),
		"path": string(r.path), "route": r.route, "status": r.status, "bytes": r.bytes,
		"duration_ms": float64(r.duration.Microseconds()) / 1000, "upstream": r.upstream,
		"client": clientString(r.client),
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// clientString is the client field: the address, or "" when unknown.
func clientString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func sameValue(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Issue 12.3: the line has exactly today's fields, and hostile bytes in the
// path, user, method or id (quotes, control characters, a forged field,
// invalid UTF-8, U+2028) stay inside their string with the value
// encoding/json gives them.
func TestAccessLineHostileInput(t *testing.T) {
	t.Parallel()
	base := accessRecord{
		time: time.Date(2026, 12, 6, 18, 0, 0, 123456789, time.UTC), requestID: []byte("0123456789abcdef0123456789abcdef"),
		tenant: "t1", user: []byte("alice"), method: []byte("GET"), path: []byte("/app/orders"), route: "proxy",
		status: 200, bytes: 20, duration: 1234567 * time.Nanosecond, upstream: "http://127.0.0.1:8080",
	}
	tests := []struct {
		name string
		mod  func(r *accessRecord)
	}{
		{"plain", func(*accessRecord) {}},
		{"quotes and a forged field", func(r *accessRecord) { r.path = []byte(`/a","level":"ERROR","user":"root`) }},
		{"backslashes", func(r *accessRecord) { r.user = []byte(`a\"b\\`) }},
		{"CRLF and a second line", func(r *accessRecord) { r.path = []byte("/a\r\n{\"msg\":\"forged\"}\n") }},
		{"every control byte", func(r *accessRecord) {
			var b []byte
			for c := range 0x20 {
				b = append(b, byte(c))
			}
			r.path = append(b, 0x7f)
		}},
		{"invalid UTF-8", func(r *accessRecord) { r.path = []byte("/\xff\xfe\xc3(\xe2\x82/\xed\xa0\x80") }},
		{"valid UTF-8 and separators", func(r *accessRecord) { r.user = []byte("zoë 日本 \u2028\u2029 😀") }},
		{"odd method", func(r *accessRecord) { r.method = []byte("F\x01RGED") }},
		{"IPv4 client", func(r *accessRecord) { r.client = netip.MustParseAddr("203.0.113.7") }},
		{"IPv6 client", func(r *accessRecord) { r.client = netip.MustParseAddr("2001:db8::7") }},
		{"empty strings", func(r *accessRecord) { r.user, r.tenant, r.upstream, r.path = nil, "", "", []byte{} }},
		{"zero duration, huge size", func(r *accessRecord) { r.duration, r.bytes, r.status = 0, 1<<40, 599 }},
		{"long path", func(r *accessRecord) { r.path = []byte("/" + strings.Repeat("a\"", 3000)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := base
			tt.mod(&r)
			line := appendAccessLine(nil, &r)
			got := decodeLine(t, line)
			if want := jsonValue(t, &r); !sameValue(got, want) {
				t.Errorf("appendAccessLine = %s\nwant the value of %v", line, want)
			}
			if len(got) != 15 {
				t.Errorf("line has %d fields, want 15: %s", len(got), line)
			}
			if !utf8.Valid(line) || bytes.ContainsAny(line[:len(line)-1], "\r\n\u2028\u2029") {
				t.Errorf("line is not clean UTF-8 on one line: %q", line)
			}
		})
	}
}

// FuzzAccessLine: for any bytes in the request-controlled fields, the line
// is one valid JSON object with the value encoding/json gives the same
// fields.
func FuzzAccessLine(f *testing.F) {
	f.Add([]byte("/app"), []byte("alice"), []byte("GET"), "t1", int64(1500))
	f.Add([]byte("/\xff\"\\\n\u2028"), []byte("\x00\x1f"), []byte("F\x01"), "\xc3", int64(0))
	f.Fuzz(func(t *testing.T, path, user, method []byte, tenant string, us int64) {
		r := accessRecord{time: time.Unix(0, us*1000).UTC(), requestID: user, tenant: tenant, user: user, method: method,
			path: path, route: tenant, status: int(us % 1000), bytes: int(us), duration: time.Duration(us) * time.Microsecond, upstream: tenant}
		line := appendAccessLine(nil, &r)
		if got, want := decodeLine(t, line), jsonValue(t, &r); !sameValue(got, want) {
			t.Errorf("appendAccessLine = %s\nwant the value of %v", line, want)
		}
	})
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	b       bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *blockingWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// Issue 12.3: a destination that stops taking lines never stalls a
// request: once the buffer is full, lines are dropped and counted; when the
// destination recovers, Shutdown writes what was kept. Without the bounded
// writer each request would wait on the blocked Write.
func TestAccessLogBlockedWriterDropsAndCounts(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	w := &blockingWriter{release: make(chan struct{})}
	e := startEnv(t, envConfig{upstream: up.URL, optsFn: func(o *Options) {
		o.AccessLog = w
		o.AccessLogBuffer = 2048 // a few lines
	}})
	const n = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			if r := e.do("GET", "t1.test", "/app", "alice-key", nil); r.status != 200 {
				t.Errorf("GET = %d", r.status)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("requests stalled behind a blocked access log writer")
	}
	dropped := testutil.ToFloat64(e.srv.metrics.accessDropped)
	if dropped == 0 {
		t.Fatalf("safeclose_access_log_dropped_total = 0 after %d requests into a 2 KiB buffer", n)
	}
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body, _ := io.ReadAll(rec.Body); !strings.Contains(string(body), "safeclose_access_log_dropped_total ") {
		t.Errorf("/metrics lacks safeclose_access_log_dropped_total")
	}
	close(w.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.access.close(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(w.String(), "\n")
	if lines+int(dropped) != n || lines == 0 {
		t.Errorf("%d lines written + %v dropped, want %d in all, some written", lines, dropped, n)
	}
	for _, l := range strings.SplitAfter(w.String(), "\n") {
		if l != "" {
			decodeLine(t, []byte(l))
		}
	}
}

// slowWriter takes each Write after a delay.
type slowWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Issue 12.3: Shutdown writes every line still buffered before it returns.
func TestAccessLogShutdownFlushes(t *testing.T) {
	t.Parallel()
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	w := &slowWriter{}
	a := newAccessLog(w, 0, dropped)
	const n = 500
	for i := range n {
		r := accessRecord{time: time.Now(), path: []byte("/p"), status: 200 + i%100}
		a.add(appendAccessLine(nil, &r))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(w.b.String(), "\n"); got != n || testutil.ToFloat64(dropped) != 0 {
		t.Errorf("after close: %d lines written, %v dropped; want %d, 0", got, testutil.ToFloat64(dropped), n)
	}
	a.add([]byte("late\n")) // after close: dropped, not written, no panic
	if testutil.ToFloat64(dropped) != 1 || strings.Contains(w.b.String(), "late") {
		t.Errorf("a line added after close was not dropped")
	}
}

// Issue 12.3: the proxy's Shutdown flushes the access log (through the
// server, not the writer alone).
func TestServerShutdownFlushesAccessLog(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	w := &slowWriter{}
	e := startEnv(t, envConfig{upstream: up.URL, optsFn: func(o *Options) { o.AccessLog = w }})
	for range 5 {
		e.do("GET", "t1.test", "/app", "alice-key", nil)
	}
	e.stop() // Shutdown (5 s bound), and checks its error
	w.mu.Lock()
	defer w.mu.Unlock()
	if got := strings.Count(w.b.String(), "\n"); got != 5 {
		t.Errorf("after Shutdown: %d lines written, want 5", got)
	}
}
