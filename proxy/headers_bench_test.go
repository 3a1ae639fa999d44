package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// headerCases are requests as they reach handle: what wrk sends in
// internal/bench/load.sh, and a browser's typical set.
var headerCases = []struct {
	name string
	raw  string
}{
	{"wrk", "GET / HTTP/1.1\r\nHost: apikeys.bench\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln\r\n\r\n"},
	{"browser", "GET /app/orders?page=2 HTTP/1.1\r\nHost: apikeys.bench\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Referer: https://apikeys.bench/app\r\nCookie: session=abc; theme=dark\r\nConnection: keep-alive\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln\r\n\r\n"},
}

// upstreamAnswer is the load harness upstream's response (fasthttp).
const upstreamAnswer = "HTTP/1.1 200 OK\r\nServer: upstream\r\nDate: Sun, 06 Dec 2026 22:00:00 GMT\r\n" +
	"Content-Type: text/plain\r\nContent-Length: 20\r\n\r\nhello from upstream\n"

// plainPathHeaders is the header work of one proxied request on the plain
// path, in handle's and proxyRequest's order, without the network: request
// id, routing path, sanitising, hop-by-hop stripping, identity and
// forwarding headers, and the response's copy and stripping.
func plainPathHeaders(s *Server, ctx *fasthttp.RequestCtx, up *fasthttp.Response) error {
	var ridBuf [maxRequestIDLen]byte
	rid := s.requestID(&ctx.Request.Header, ridBuf[:0])
	if _, err := canonicalizeTarget(ctx); err != nil {
		return err
	}
	if err := sanitizeRequest(&ctx.Request.Header); err != nil {
		return err
	}
	h := &ctx.Request.Header
	_ = isWebSocketUpgrade(h)
	_ = h.ConnectionClose()
	stripHopByHop(h)
	setIdentity(h, Identity{Subject: "bench"}, "apikeys")
	setForwarding(ctx, h)
	up.Header.CopyTo(&ctx.Response.Header)
	stripHopByHopResp(&ctx.Response.Header)
	ctx.Response.Header.SetCanonical(keyRequestID, rid)
	return nil
}

// headerCtx parses raw into a fresh RequestCtx from 127.0.0.1.
func headerCtx(tb testing.TB, raw string, up *fasthttp.Response) *fasthttp.RequestCtx {
	tb.Helper()
	var req fasthttp.Request
	if err := req.ReadLimitBody(bufioReader(raw), 0); err != nil {
		tb.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return ctx
}

func upstreamResponse(tb testing.TB) *fasthttp.Response {
	tb.Helper()
	up := &fasthttp.Response{}
	if err := up.Read(bufioReader(upstreamAnswer)); err != nil {
		tb.Fatal(err)
	}
	return up
}

// TestPlainPathHeaders is the benchmark's check: what the upstream and the
// client would get.
func TestPlainPathHeaders(t *testing.T) {
	t.Parallel()
	s := &Server{}
	up := upstreamResponse(t)
	for _, c := range headerCases {
		ctx := headerCtx(t, c.raw, up)
		if err := plainPathHeaders(s, ctx, up); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		h := &ctx.Request.Header
		for k, want := range map[string]string{
			HeaderUser: "bench", HeaderTenant: "apikeys", "X-Forwarded-For": "127.0.0.1",
			"X-Forwarded-Proto": "http", "Forwarded": "for=127.0.0.1;host=apikeys.bench;proto=http",
		} {
			if got := string(h.Peek(k)); got != want {
				t.Errorf("%s: request %s = %q, want %q", c.name, k, got, want)
			}
		}
		if len(h.Peek(HeaderRequestID)) != 32 || string(ctx.Response.Header.Peek(HeaderRequestID)) != string(h.Peek(HeaderRequestID)) {
			t.Errorf("%s: request id %q, response %q", c.name, h.Peek(HeaderRequestID), ctx.Response.Header.Peek(HeaderRequestID))
		}
		if c.name == "browser" && (len(h.Peek("Cookie")) == 0 || len(h.Peek("Keep-Alive")) != 0 || len(h.Peek("Connection")) != 0) {
			t.Errorf("%s: forwarded headers %s", c.name, h.Header())
		}
		if got := string(ctx.Response.Header.ContentType()); got != "text/plain" {
			t.Errorf("%s: response Content-Type %q", c.name, got)
		}
	}
}

// BenchmarkPlainPathHeaders: the plain path's header work per request
// (plainPathHeaders), without the network.
func BenchmarkPlainPathHeaders(b *testing.B) {
	s := &Server{}
	up := upstreamResponse(b)
	for _, c := range headerCases {
		b.Run(c.name, func(b *testing.B) {
			var req fasthttp.Request
			if err := req.ReadLimitBody(bufioReader(c.raw), 0); err != nil {
				b.Fatal(err)
			}
			ctx := headerCtx(b, c.raw, up)
			b.ReportAllocs()
			for b.Loop() {
				req.CopyTo(&ctx.Request)
				_ = ctx.Host() // the server parses the URI; handle's tenantFor reads it
				ctx.Response.Reset()
				if err := plainPathHeaders(s, ctx, up); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
