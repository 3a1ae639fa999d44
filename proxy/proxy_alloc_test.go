//go:build !race

package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// Issue 12.1: a request on the built-in api_keys path allocates nothing in
// Safeclose's own code, steady state (client, server and upstream are in
// this process, so the count covers all three; the plain fasthttp proxy
// baseline allocates 0). Issue 12 (round 2): a small sized response is read
// whole by the upstream transport, so fasthttp's streamed-response objects
// (4 allocations) are no longer made for it either.
func TestProxyAllocs(t *testing.T) {
	up := benchUpstream(t)
	e := startEnv(t, envConfig{upstream: "http://" + up})
	tg := benchTarget{"safeclose-apikey", e.addr, "t1.test", [][2]string{{"Authorization", "Bearer alice-key"}}}
	c := &fasthttp.HostClient{Addr: tg.addr, MaxConns: 1}
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	get := func() {
		if st, err := doGet(c, tg, req, res); err != nil || st != 200 {
			t.Fatalf("GET = %d, %v; want 200", st, err)
		}
	}
	for range 100 { // warm every pool on the way
		get()
	}
	// AllocsPerRun reads process-wide counters; the median of a few runs
	// keeps a background allocation (a Badger ticker) from counting.
	var runs []float64
	for range 5 {
		runs = append(runs, testing.AllocsPerRun(200, get))
	}
	if n := median(runs); n > 0 {
		t.Errorf("api_keys request allocates %v times (runs %v), want 0", n, runs)
	}
}

func median(xs []float64) float64 {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
	return xs[len(xs)/2]
}

// The header work of a browser's request (a Connection header to honour,
// a Cookie) allocates nothing: the names to delete are collected on the
// stack (stripHopByHop, sanitizeRequest).
func TestPlainPathHeadersAllocs(t *testing.T) {
	s := &Server{}
	up := upstreamResponse(t)
	for _, c := range headerCases {
		var req fasthttp.Request
		if err := req.ReadLimitBody(bufioReader(c.raw), 0); err != nil {
			t.Fatal(err)
		}
		ctx := headerCtx(t, c.raw, up)
		run := func() {
			req.CopyTo(&ctx.Request)
			_ = ctx.Host()
			ctx.Response.Reset()
			if err := plainPathHeaders(s, ctx, up); err != nil {
				t.Fatal(err)
			}
		}
		run()
		if n := testing.AllocsPerRun(100, run); n > 0 {
			t.Errorf("%s: %v allocations per request, want 0", c.name, n)
		}
	}
}
