//go:build !race

package hostabi_test

import (
	"context"
	"testing"
	"time"

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

// Issue 12.2: the jwtauth example's pooled call (HS256 checked in the
// host) allocates nothing on the host either.
func TestAuthenticateJWTAllocs(t *testing.T) {
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	p := load(t, newEngine(t), "jwtauth", hostabi.PluginOptions{PoolSize: 1,
		Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true}, Secrets: map[string][]byte{"main": key}})
	r := bytesReq(hdr("Host", "t1.test", "Authorization", "Bearer "+tok))
	n := testing.AllocsPerRun(200, func() {
		if d, err := p.Authenticate(context.Background(), r); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	})
	if n != 0 {
		t.Errorf("jwtauth Authenticate allocates %.1f times per call, want 0", n)
	}
}
