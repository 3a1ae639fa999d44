//go:build !race

package hostabi_test

import (
	"context"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 12.1: under fuel the pooled auth call, deadline enforced, allocates
// nothing on the host: no per-call watcher goroutine, no timer, no context.
func TestAuthenticateAllocsFuel(t *testing.T) {
	e := newEngineWith(t, hostabi.EnforceFuel)
	p := load(t, e, "allow", hostabi.PluginOptions{PoolSize: 1})
	r := &byteReq{name: []byte("X-User"), value: []byte("alice")}
	n := testing.AllocsPerRun(200, func() {
		if d, err := p.Authenticate(context.Background(), r); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	})
	if n != 0 {
		t.Errorf("Authenticate under fuel allocates %.1f times per call, want 0", n)
	}
}
