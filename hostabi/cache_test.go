package hostabi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

func TestDecisionCacheHitsOnlyOnSameInputs(t *testing.T) {
	e := newEngine(t)
	p := load(t, e, "allow", hostabi.PluginOptions{CacheTTL: time.Minute})
	call := func(h ...string) hostabi.Decision {
		t.Helper()
		d, err := p.Authenticate(context.Background(), &req{headers: hdr(h...)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	call("X-User", "alice", "X-Role", "admin")
	before := p.Stats()
	d := call("X-User", "alice", "X-Role", "admin", "X-Other", "ignored")
	after := p.Stats()
	if after.CacheHits != before.CacheHits+1 || after.Calls != before.Calls {
		t.Errorf("same inputs: hits %d→%d calls %d→%d; want a cache hit", before.CacheHits, after.CacheHits, before.Calls, after.Calls)
	}
	if d.Subject != "alice" || claims(d)["role"] != "admin" {
		t.Errorf("cached decision = %+v", d)
	}
	// Any input the plugin read differs: the plugin runs again.
	for _, h := range [][]string{{"X-User", "bob", "X-Role", "admin"}, {"X-User", "alice", "X-Role", "user"}, {"X-User", "alice"}} {
		before = p.Stats()
		d = call(h...)
		if p.Stats().Calls != before.Calls+1 {
			t.Errorf("inputs %v: no plugin call; the cache answered for different inputs", h)
		}
		if d.Subject != h[1] {
			t.Errorf("inputs %v: subject %q", h, d.Subject)
		}
	}
	// Denials are never cached.
	call("X-User", "blocked")
	before = p.Stats()
	if d := call("X-User", "blocked"); d.Allow || p.Stats().Calls != before.Calls+1 {
		t.Errorf("a denial was served from the cache: %+v", d)
	}
}

// Property: with the cache on, every answer equals the plugin's own answer.
func TestDecisionCacheEqualsPlugin(t *testing.T) {
	e := newEngine(t)
	cached := load(t, e, "allow", hostabi.PluginOptions{CacheTTL: time.Minute})
	plain := load(t, e, "allow", hostabi.PluginOptions{Tenant: "t-plain"})
	rng := rand.New(rand.NewPCG(1, 2))
	users := []string{"alice", "bob", "blocked", ""}
	roles := []string{"", "admin", "user"}
	for i := range 400 {
		var h [][2]string
		if u := users[rng.IntN(len(users))]; u != "" || rng.IntN(2) == 0 {
			h = append(h, [2]string{[]string{"X-User", "x-user", "X-USER"}[rng.IntN(3)], u})
		}
		if r := roles[rng.IntN(len(roles))]; r != "" {
			h = append(h, [2]string{"X-Role", r})
		}
		if rng.IntN(3) == 0 {
			h = append(h, [2]string{"X-User", "second"})
		}
		r := &req{headers: h}
		a, err1 := cached.Authenticate(context.Background(), r)
		b, err2 := plain.Authenticate(context.Background(), r)
		if fmt.Sprint(a, err1) != fmt.Sprint(b, err2) {
			t.Fatalf("request %d %v: cached %+v %v, plugin %+v %v", i, h, a, err1, b, err2)
		}
	}
	if cached.Stats().CacheHits == 0 {
		t.Error("the property run never hit the cache")
	}
}

func TestDecisionCacheRespectsJWTExpiryAndClockReads(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().Unix())
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{CacheDir: cacheDir, Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	key := []byte("tenant-jwt-secret-0123456789abcd")
	p := load(t, e, "jwtauth", hostabi.PluginOptions{CacheTTL: time.Hour, Secrets: map[string][]byte{"main": key},
		Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true}, JWT: hostabi.JWTOptions{Leeway: time.Second}})
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": now.Load() + 60})
	r := &req{headers: hdr("Authorization", "Bearer "+tok)}
	for range 2 {
		if d, err := p.Authenticate(context.Background(), r); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	}
	if p.Stats().CacheHits != 1 {
		t.Fatalf("CacheHits = %d, want 1", p.Stats().CacheHits)
	}
	now.Add(120) // past exp: the cached allow must not outlive the token
	if d, err := p.Authenticate(context.Background(), r); err != nil || d.Allow {
		t.Errorf("after exp: %+v %v, want a denial", d, err)
	}
	// A plugin that reads the clock or the KV store is never cached.
	probe := load(t, e, "probe", hostabi.PluginOptions{CacheTTL: time.Hour,
		Caps: hostabi.Capabilities{Config: true, Log: true, Clock: true, KV: true, Crypto: true, Body: true}})
	for range 3 {
		if _, err := probe.Authenticate(context.Background(), &req{}); err != nil {
			t.Fatal(err)
		}
	}
	if h := probe.Stats().CacheHits; h != 0 {
		t.Errorf("probe CacheHits = %d, want 0", h)
	}
}
