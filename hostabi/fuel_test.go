package hostabi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

func newEngineWith(t testing.TB, enf hostabi.Enforcement) *hostabi.Engine {
	t.Helper()
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{CacheDir: cacheDir, Enforcement: enf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// Issue 12.1: both ways of enforcing the deadline stop a guest that loops
// in a call or in its initialisation, fail closed, and keep serving.
func TestEnforcementModes(t *testing.T) {
	modes := []struct {
		name string
		enf  hostabi.Enforcement
	}{{"fuel", hostabi.EnforceFuel}, {"context", hostabi.EnforceContext}}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEngineWith(t, m.enf)
			for _, g := range []string{"loop", "loop-as"} {
				t.Run(g, func(t *testing.T) { testEnforcementLoop(t, e, g) })
			}
			_, err := e.Load(context.Background(), hostabi.PluginOptions{Tenant: "t1", Name: "initloop",
				Wasm: wasm(t, "initloop"), Timeout: time.Millisecond, PoolSize: 1})
			if !errors.Is(err, hostabi.ErrRefused) || !strings.Contains(err.Error(), "instantiate") {
				t.Errorf("Load(initloop) = %v, want refused at instantiate", err)
			}
		})
	}
}

// testEnforcementLoop: a looping guest (Go or AssemblyScript) is stopped
// by the deadline, fails closed, and the plugin keeps serving.
func testEnforcementLoop(t *testing.T, e *hostabi.Engine, guest string) {
	p := load(t, e, guest, hostabi.PluginOptions{Timeout: 30 * time.Millisecond, PoolSize: 1})
	for i := range 2 {
		d, err := authRetryBusy(p, &req{headers: hdr("X-Loop", "1")})
		if !errors.Is(err, hostabi.ErrTimeout) || d.Allow {
			t.Fatalf("call %d: looping guest = %+v, %v; want ErrTimeout", i, d, err)
		}
	}
	d, err := authRetryBusy(p, &req{})
	if err != nil || !d.Allow {
		t.Fatalf("after timeouts: %+v, %v; want allowed", d, err)
	}
	if s := p.Stats(); s.Timeouts < 2 {
		t.Errorf("Stats().Timeouts = %d, want ≥ 2", s.Timeouts)
	}
}

// Issue 12.1: every example plugin and test guest loads and answers under
// the fuel rewrite (the Go runtime's own code included).
func TestFuelRunsEveryGuest(t *testing.T) {
	e := newEngineWith(t, hostabi.EnforceFuel)
	for _, n := range append(append([]string(nil), exampleNames...), "allow", "probe", "event", "allow-as", "probe-as", "event-as", "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as") {
		t.Run(n, func(t *testing.T) {
			o := hostabi.PluginOptions{Tenant: "t1", Name: n, Wasm: wasm(t, n), PoolSize: 1, Timeout: 5 * time.Second,
				Caps: hostabi.Capabilities{Config: true, Log: true, Clock: true, KV: true, Crypto: true, Body: true}}
			if n == "webhookfilter" || n == "webhookfilter-as" || n == "event" || n == "event-as" {
				o.Kind = hostabi.KindEvent
			}
			p, err := e.Load(context.Background(), o)
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			defer p.Close(context.Background())
			if o.Kind == hostabi.KindEvent {
				if _, err := p.HandleEvent(context.Background(), hostabi.Event{Body: []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR"}`)}); err != nil {
					var te *hostabi.TrapError
					if errors.As(err, &te) || errors.Is(err, hostabi.ErrTimeout) {
						t.Fatalf("HandleEvent = %v", err)
					}
				}
				return
			}
			if _, err := p.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")}); err != nil {
				var te *hostabi.TrapError
				if errors.As(err, &te) || errors.Is(err, hostabi.ErrTimeout) {
					t.Fatalf("Authenticate = %v", err)
				}
			}
		})
	}
}

// fixedReq has its bytes ready, as the proxy's view of a fasthttp request
// does, so benchmarks measure the host and the guest, not conversions.
type fixedReq struct{ name, value []byte }

func (r *fixedReq) Method() []byte                       { return []byte("GET") }
func (r *fixedReq) URI() []byte                          { return []byte("/") }
func (r *fixedReq) VisitHeaders(fn func(name, v []byte)) { fn(r.name, r.value) }
func (r *fixedReq) SourceAddr() []byte                   { return nil }
func (r *fixedReq) Body() []byte                         { return nil }
