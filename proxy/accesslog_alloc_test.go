//go:build !race

package proxy

import (
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
