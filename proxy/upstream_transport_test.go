package proxy

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// pauseMark in a canned answer makes cannedUpstream flush what came before
// and pause before the rest (a slow body).
const pauseMark = "|PAUSE|"

// cannedUpstream answers every request on every connection with ans, and
// closes the connection after it when closeAfter is set. It counts the
// connections it accepted.
func cannedUpstream(t *testing.T, ans string, closeAfter bool) (string, *atomic.Int32) {
	return rawUpstream(t, func(c net.Conn, _ int) bool {
		for i, part := range strings.Split(ans, pauseMark) {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := io.WriteString(c, part); err != nil {
				return false
			}
		}
		return !closeAfter
	})
}

func sized(cl int, ctype, body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(cl) + "\r\n\r\n" + body
}

// Issue 12 (round 2): the upstream transport reads a sized, ordinary body
// of at most maxBufferedResponse bytes whole (no stream) and streams the
// rest; either way the body arrives intact and the connection goes back to
// the pool only when its answer was read exactly to its end.
func TestUpstreamTransportBoundary(t *testing.T) {
	atBound := strings.Repeat("a", maxBufferedResponse)
	tests := []struct {
		name       string
		method     string
		ans        string
		closeAfter bool
		stream     bool   // the body must stream
		body       string // want
		wantErr    bool
		reused     bool // the second request reuses the first's connection
		partial    bool // the stream is closed after its first byte
	}{
		{name: "sized, exactly at the bound", ans: sized(maxBufferedResponse, "application/json", atBound), body: atBound, reused: true},
		{name: "sized, one over the bound", ans: sized(maxBufferedResponse+1, "application/json", atBound+"b"), stream: true, body: atBound + "b", reused: true},
		{name: "sized, empty", ans: sized(0, "text/plain", ""), body: "", reused: true},
		{name: "sized, upstream says close", ans: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", closeAfter: true, body: "hello"},
		{name: "slow sized body", ans: sized(10, "text/plain", "hello"+pauseMark+"world"), body: "helloworld", reused: true},
		{name: "stream closed before its end", ans: sized(maxBufferedResponse+1, "application/json", atBound+"b"), stream: true, partial: true, body: "a"},
		{name: "chunked", ans: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", stream: true, body: "hello", reused: true},
		{name: "small event stream", ans: sized(5, "text/event-stream", "data:"), stream: true, body: "data:", reused: true},
		{name: "unsized, ends at close", ans: "HTTP/1.1 200 OK\r\n\r\nuntil close", closeAfter: true, stream: true, body: "until close"},
		{name: "HEAD", method: "HEAD", ans: sized(100, "text/plain", ""), body: "", reused: true},
		{name: "204", ans: "HTTP/1.1 204 No Content\r\n\r\n", body: "", reused: true},
		{name: "304", ans: "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", body: "", reused: true},
		{name: "upstream closes early (lying Content-Length)", ans: sized(100, "text/plain", "only ten b"), closeAfter: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, conns := cannedUpstream(t, tt.ans, tt.closeAfter)
			tg, err := newTarget(url, 1, UpstreamTimeouts{Connect: time.Second, ResponseHeader: 10 * time.Second, Idle: time.Minute}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI(url + "/x")
				if tt.method != "" {
					req.Header.SetMethod(tt.method)
				}
				err := tg.hc.Do(req, resp)
				if tt.wantErr {
					if err == nil {
						t.Fatalf("request %d: Do = nil error, body %q; want an error", i, resp.Body())
					}
					return
				}
				if err != nil {
					t.Fatalf("request %d: Do: %v", i, err)
				}
				if got := resp.IsBodyStream(); got != tt.stream {
					t.Errorf("request %d: IsBodyStream = %v, want %v", i, got, tt.stream)
				}
				var body []byte
				if bs := resp.BodyStream(); bs != nil && tt.partial {
					body = make([]byte, 1)
					_, err = io.ReadFull(bs, body)
					if err != nil {
						t.Fatalf("request %d: reading the stream: %v", i, err)
					}
					resp.CloseBodyStream() //nolint:errcheck // it discards the connection
				} else if bs != nil {
					body, err = io.ReadAll(bs)
					if err != nil {
						t.Fatalf("request %d: reading the stream: %v", i, err)
					}
					if err := resp.CloseBodyStream(); err != nil {
						t.Fatalf("request %d: CloseBodyStream: %v", i, err)
					}
				} else {
					body = append(body, resp.Body()...)
				}
				if string(body) != tt.body {
					t.Errorf("request %d: body = %d bytes %.20q…, want %d bytes", i, len(body), body, len(tt.body))
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
			if n := conns.Load(); tt.reused && n != 1 || !tt.reused && n != 2 {
				t.Errorf("two requests used %d upstream connections, want reused=%v", n, tt.reused)
			}
		})
	}
}

// Issue 12 (round 2): through the proxy, a body exactly at the bound and
// one byte over it both arrive whole; an upstream that dies inside a small
// sized body gives a 502, and the next request is answered normally.
func TestProxySizedResponseBoundary(t *testing.T) {
	atBound := strings.Repeat("a", maxBufferedResponse)
	tests := []struct {
		name       string
		first      string
		wantStatus int
		wantBody   string
	}{
		{"exactly at the bound", sized(maxBufferedResponse, "text/plain", atBound), 200, atBound},
		{"one over the bound", sized(maxBufferedResponse+1, "text/plain", atBound+"b"), 200, atBound + "b"},
		{"upstream stalls inside a small body, then closes", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly ten b", http.StatusBadGateway, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, _ := lyingUpstream(t, tt.first)
			e := startEnv(t, envConfig{upstream: url, optsFn: func(o *Options) {
				for i := range o.Tenants {
					o.Tenants[i].UpstreamConns = 1
				}
			}})
			r := e.do("GET", "t1.test", "/one", "alice-key", nil)
			if r.status != tt.wantStatus || tt.wantBody != "" && string(r.body) != tt.wantBody {
				t.Fatalf("GET = %d, %d bytes; want %d, %d bytes", r.status, len(r.body), tt.wantStatus, len(tt.wantBody))
			}
			if r := e.do("GET", "t1.test", "/next", "bob-key", nil); r.status != 200 || string(r.body) != "good" {
				t.Fatalf("next GET = %d %q, want 200 good", r.status, r.body)
			}
		})
	}
}
