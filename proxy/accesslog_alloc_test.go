//go:build !race

package proxy

import (
	"context"
	"io"
	"testing"

	"github.com/valyala/fasthttp"
)

// Issue 13.2: assigning a request id allocates nothing.
func TestRequestIDAllocs(t *testing.T) {
	s := &Server{opts: Options{TrustRequestID: true}}
	var h fasthttp.RequestHeader
	h.Set("Authorization", "Bearer x")
	var buf [maxRequestIDLen]byte
	if n := testing.AllocsPerRun(100, func() { s.requestID(&h, buf[:0]) }); n != 0 {
		t.Errorf("requestID allocates %v times, want 0", n)
	}
}

// Issue 12.3: the per-request bookkeeping with the access log on (id,
// counters, histogram, the encoded line queued) allocates nothing; slog's
// JSON handler allocated 5 times a line.
func TestAccessLogAllocs(t *testing.T) {
	s, tn, ctx := bookkeeping(io.Discard)
	t.Cleanup(func() { _ = s.access.close(context.Background()) })
	runBookkeeping(s, tn, ctx) // the buffers' first growth
	if n := testing.AllocsPerRun(1000, func() { runBookkeeping(s, tn, ctx) }); n != 0 {
		t.Errorf("bookkeeping with the access log allocates %v times, want 0", n)
	}
}
