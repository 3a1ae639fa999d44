package proxy

import (
	"bytes"
	"io"
	"testing"

	"github.com/valyala/fasthttp"
)

// bookkeeping is the per-request work issue 13 added to handle: request
// id, response header, counters, latency histogram and (optionally) the
// access log line.
func bookkeeping(w io.Writer) (*Server, *tenant, *fasthttp.RequestCtx) {
	s := &Server{metrics: newMetrics(nil)}
	if w != nil {
		s.access = newAccessLog(w, 0, s.metrics.accessDropped)
	}
	tn := &tenant{Tenant: Tenant{Name: "t1", Upstream: "http://10.0.0.1:8080"}, m: s.metrics.tenant("t1")}
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.SetRequestURI("/app/orders")
	ctx.Request.Header.SetHost("t1.test")
	ctx.Request.Header.Set(HeaderUser, "alice")
	ctx.Response.SetBodyString("hello from upstream\n")
	return s, tn, ctx
}

func runBookkeeping(s *Server, tn *tenant, ctx *fasthttp.RequestCtx) {
	var buf [maxRequestIDLen]byte
	rid := s.requestID(&ctx.Request.Header, buf[:0])
	s.finishRequest(ctx, tn, "proxy", []byte("/app/orders"), rid, true, monoNow())
}

func TestBookkeeping(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s, tn, ctx := bookkeeping(&out)
	runBookkeeping(s, tn, ctx)
	s.access.sync()
	if id := ctx.Response.Header.Peek(HeaderRequestID); len(id) != 32 || !bytes.Contains(out.Bytes(), id) ||
		!bytes.Contains(out.Bytes(), []byte(`"user":"alice"`)) {
		t.Errorf("response id %q, log %s", id, out.Bytes())
	}
}

// BenchmarkBookkeeping: the per-request cost of request ids, metrics and
// the access log (JSON to io.Discard), without the network.
func BenchmarkBookkeeping(b *testing.B) {
	for _, c := range []struct {
		name string
		w    io.Writer
	}{{"no-access-log", nil}, {"access-log", io.Discard}} {
		b.Run(c.name, func(b *testing.B) {
			s, tn, ctx := bookkeeping(c.w)
			b.ReportAllocs()
			for b.Loop() {
				runBookkeeping(s, tn, ctx)
			}
		})
	}
}
