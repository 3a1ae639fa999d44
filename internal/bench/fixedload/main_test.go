package main

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// serve answers status to every request on loopback and counts requests
// and the ones that carried the bearer token.
func serve(t *testing.T, status int, token string) (addr string, hits, authed *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits, authed = new(atomic.Int64), new(atomic.Int64)
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		if string(ctx.Request.Header.Peek("Authorization")) == "Bearer "+token && string(ctx.Host()) == "t1.test" {
			authed.Add(1)
		}
		ctx.SetStatusCode(status)
	}}
	go s.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String(), hits, authed
}

// Exactly n requests are sent, each with the Host and the token.
func TestRunSendsExactlyN(t *testing.T) {
	addr, hits, authed := serve(t, 200, "tok")
	failed, first := run(addr, "t1.test", "tok", 257, 8)
	if failed != 0 || first != nil {
		t.Fatalf("run = %d failed, first %v", failed, first)
	}
	if hits.Load() != 257 || authed.Load() != 257 {
		t.Fatalf("server saw %d requests, %d with Host and token; want 257", hits.Load(), authed.Load())
	}
}

// A status other than 200 counts as a failure, named in the first error.
func TestRunCountsNon200(t *testing.T) {
	addr, hits, _ := serve(t, 503, "")
	failed, first := run(addr, "t1.test", "", 10, 2)
	if failed != 10 || first == nil || !strings.Contains(first.Error(), "503") {
		t.Fatalf("run = %d failed, first %v; want 10 and a 503", failed, first)
	}
	if hits.Load() != 10 {
		t.Fatalf("server saw %d requests, want 10", hits.Load())
	}
}
