package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Second trust pass (issue 9, after streaming, WebSockets, pools, TLS and
// request ids were added): a hostile client against a real proxy on
// loopback, over raw TCP where net/http would refuse to send the attack.

// seenUpstream records every request that reaches it: method, URI and body.
type seenUpstream struct {
	mu   sync.Mutex
	reqs []string
}

func newSeenUpstream(t *testing.T) (*seenUpstream, string) {
	t.Helper()
	u := &seenUpstream{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			b = append(b, " (body read failed: "+err.Error()+")"...)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Method+" "+r.RequestURI+" pad="+r.Header.Get("X-Pad")+" te="+strings.Join(r.TransferEncoding, ",")+" body="+string(b))
		u.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(ts.Close)
	return u, ts.URL
}

func (u *seenUpstream) all() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.reqs...)
}

// rawExchange writes req on one connection and reads every answer until the
// proxy closes it or nothing more comes (a bounded wait).
func rawExchange(t *testing.T, addr, req string) []*http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for range 4 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.ReadAll(res.Body)
		res.Body.Close()
		out = append(out, res)
	}
	return out
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: t1.test\r\n\r\n"

// Issue 9.2 (second trust pass): request smuggling on the streamed request path. The
// smuggled request carries no credentials, so the upstream seeing it (or
// seeing two requests for the client's one) is a smuggle.
func TestHostileSmuggling(t *testing.T) {
	const head = "Host: t1.test\r\nAuthorization: Bearer alice-key\r\n"
	tests := []struct {
		name string
		req  string
	}{
		{"CL and TE", "POST /a HTTP/1.1\r\n" + head + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE and CL", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\n" + smuggled},
		{"two Content-Lengths", "POST /a HTTP/1.1\r\n" + head + "Content-Length: 0\r\nContent-Length: 41\r\n\r\n" + smuggled},
		{"Content-Length list", "POST /a HTTP/1.1\r\n" + head + "Content-Length: 0, 41\r\n\r\n" + smuggled},
		{"Content-Length plus sign", "POST /a HTTP/1.1\r\n" + head + "Content-Length: +0\r\n\r\n" + smuggled},
		{"obs-fold TE", "POST /a HTTP/1.1\r\n" + head + "X-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 41\r\n\r\n" + smuggled},
		{"obs-fold TE value", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 41\r\n\r\n" + smuggled},
		{"TE chunked identity", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE xchunked", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: xchunked\r\nContent-Length: 41\r\n\r\n" + smuggled},
		{"TE with space before colon", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding : chunked\r\nContent-Length: 41\r\n\r\n" + smuggled},
		{"chunk size overflow", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n0\r\n\r\n" + smuggled},
		{"negative chunk size", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n" + smuggled},
		{"chunk extension", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n" + smuggled},
		{"chunk extension with CRLF in quotes", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n5;ext=\"0\r\n\r\n\"\r\nhello\r\n0\r\n\r\n"},
		{"chunk with bare LF", "POST /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n" + smuggled},
		{"body after GET", "GET /a HTTP/1.1\r\n" + head + "Content-Length: 41\r\n\r\n" + smuggled},
		{"chunked GET", "GET /a HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\n\r\n29\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"HTTP/1.0 keep-alive CL", "POST /a HTTP/1.0\r\n" + head + "Connection: keep-alive\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n" + smuggled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, url := newSeenUpstream(t)
			e := startEnv(t, envConfig{upstream: url})
			res := rawExchange(t, e.addr, tt.req)
			// A clean follow-up on a new connection: bytes the proxy left on
			// a pooled upstream connection would surface before it.
			if r := e.do("GET", "t1.test", "/after", "alice-key", nil); r.status != http.StatusOK {
				t.Fatalf("follow-up = %d %s", r.status, r.body)
			}
			got := up.all()
			var statuses []int
			for _, r := range res {
				statuses = append(statuses, r.StatusCode)
			}
			for _, g := range got {
				// A request line, not a body that merely contains the text:
				// the upstream reads a body as a body.
				if strings.HasPrefix(g, "GET /smuggled") || strings.Contains(g, "pad=a\r") {
					t.Fatalf("the upstream saw a smuggled request; it saw %q, the client got %v", got, statuses)
				}
			}
			if len(got) > 2 {
				t.Fatalf("the upstream saw %d requests for the client's one (+ follow-up): %q", len(got), got)
			}
			t.Logf("client got %v; upstream saw %q", statuses, got)
		})
	}
}

// Issue 9.2 (second trust pass): an X-Request-Id from a client is a log-injection
// vector once it is written in the access log and sent upstream. With
// trust_request_id on (the risky setting), a malformed one (CR/LF, 10 KB,
// JSON or key=value syntax, an obs-fold) is replaced by a generated id and
// never logged; a hostile path or method cannot add a log line or a field.
// Found: fasthttp's debug log of an unparsable request quoted the raw
// request bytes, Authorization header included; fasthttpLogger now logs
// the event only.
func TestHostileRequestIDAndLogInjection(t *testing.T) {
	up := idUpstream(t)
	var logs lockedBuf
	e := startEnv(t, envConfig{upstream: up.URL, logTo: &logs, optsFn: func(o *Options) {
		o.TrustRequestID = true
		o.AccessLog = &logs // JSON lines beside the server log's
	}})
	const auth = "Host: t1.test\r\nAuthorization: Bearer alice-key\r\n"
	huge := strings.Repeat("A", 10<<10)
	tests := []struct {
		name, req, raw string // raw: text that must never reach the log or the upstream
	}{
		{"bare CR", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: ab\rlevel=ERROR msg=forged-cr\r\n\r\n", "forged-cr"},
		{"bare LF", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: ab\nlevel=ERROR msg=forged-lf\r\n\r\n", "forged-lf"},
		{"obs-fold", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: ab\r\n level=ERROR msg=forged-fold\r\n\r\n", "forged-fold"},
		{"10 KB", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: " + huge + "\r\n\r\n", huge},
		{"JSON", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: \",\"level\":\"ERROR\",\"msg\":\"forged-json\r\n\r\n", "forged-json"},
		{"key=value", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: a user=admin msg=forged-kv\r\n\r\n", "forged-kv"},
		{"NUL and escapes", "GET /app HTTP/1.1\r\n" + auth + "X-Request-Id: a\x00\x1b[31mforged-esc\r\n\r\n", "forged-esc"},
		{"path with encoded CRLF", "GET /app%0d%0atime=x%20level=ERROR%20msg=forged-path HTTP/1.1\r\n" + auth + "\r\n", ""},
		{"path with quotes", "GET /app%22%20user=%22admin HTTP/1.1\r\n" + auth + "\r\n", ""},
		{"unknown host with CRLF path", "GET /x%0d%0amsg=forged-host HTTP/1.1\r\nHost: nobody.test\r\n\r\n", ""},
		{"odd method", "F\x01RGED /app HTTP/1.1\r\n" + auth + "\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, res := range rawExchange(t, e.addr, tt.req) {
				if id := res.Header.Get("X-Request-Id"); id != "" && !hexID.MatchString(id) {
					t.Errorf("answer X-Request-Id = %q, want a generated one", id)
				}
			}
		})
	}
	// Every log line is one whole record: no injected line, no raw id.
	e.srv.access.sync()
	out := logs.String()
	for i, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") && !strings.HasPrefix(line, `{"time":`) {
			t.Errorf("log line %d is not a record of its own (injected?): %q", i, line)
		}
		if strings.Contains(line, "level=ERROR msg=forged") && !strings.Contains(line, `"`) {
			t.Errorf("log line %d carries an unquoted injected field: %q", i, line)
		}
	}
	for _, tt := range tests {
		if tt.raw != "" && strings.Contains(out, tt.raw) {
			i := strings.Index(out, tt.raw)
			t.Errorf("%s: the raw request id reached the log: …%q…", tt.name, out[max(0, i-300):min(len(out), i+100)])
		}
	}
	if strings.Contains(out, "alice-key") {
		t.Errorf("the log holds a client's credentials")
	}
	// The upstream only ever saw generated ids (idUpstream answers them).
	r := e.do("GET", "t1.test", "/app", "alice-key", nil, "X-Request-Id", "a user=admin")
	if r.status != 200 || strings.Contains(string(r.body), "admin") {
		t.Fatalf("upstream saw %s (%d)", r.body, r.status)
	}
}
