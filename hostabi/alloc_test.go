//go:build !race

package hostabi_test

import (
	"context"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// The pooled auth call allocates almost nothing on the host: wazero's
// per-call termination watcher (a goroutine and a channel) is all.
func TestAuthenticateAllocs(t *testing.T) {
	e := newEngine(t)
	p := load(t, e, "allow", hostabi.PluginOptions{PoolSize: 1})
	r := &byteReq{name: []byte("X-User"), value: []byte("alice")}
	n := testing.AllocsPerRun(200, func() {
		if d, err := p.Authenticate(context.Background(), r); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	})
	if n > 6 {
		t.Errorf("Authenticate allocates %.1f times per call, want at most 6", n)
	}
}

// byteReq has its bytes ready, as the proxy's view of a fasthttp request does.
type byteReq struct{ name, value []byte }

func (r *byteReq) Method() []byte                       { return []byte("GET") }
func (r *byteReq) URI() []byte                          { return []byte("/") }
func (r *byteReq) VisitHeaders(fn func(name, v []byte)) { fn(r.name, r.value) }
func (r *byteReq) SourceAddr() []byte                   { return nil }
func (r *byteReq) Body() []byte                         { return nil }
