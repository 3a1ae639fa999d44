package hostabi_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/hostabi/internal/datamerge"
	"github.com/safeclose/safeclose/hostabi/internal/fuel"
)

// The load-time rewrites accept AssemblyScript modules: the data-segment
// merge leaves them as they are (binaryen writes a data count section with
// bulk memory on, and only ~100 segments, ~2 KB of wazero slice headers an
// instance) and the fuel rewrite decodes them, adds its two globals, and
// the result compiles. TestFuelRunsEveryGuest
// and the -as cases of TestFailClosed and TestEnforcementModes run them.
func TestASModulesRewrite(t *testing.T) {
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	for _, n := range []string{"allow-as", "loop-as", "oom-as", "probe-as", "event-as", "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as"} {
		t.Run(n, func(t *testing.T) {
			w := wasm(t, n)
			merged, before, after := datamerge.Merge(w, datamerge.MaxGap)
			if after > before || (after == before && !bytes.Equal(merged, w)) {
				t.Errorf("Merge: %d segments → %d, module changed: %v", before, after, !bytes.Equal(merged, w))
			}
			out, err := fuel.Instrument(merged, fuel.Options{Initial: 1 << 32})
			if err != nil {
				t.Fatalf("Instrument = %v", err)
			}
			cm, err := rt.CompileModule(context.Background(), out)
			if err != nil {
				t.Fatalf("compile the rewritten module: %v", err)
			}
			defer cm.Close(context.Background())
			for _, g := range []string{fuel.DefaultFuelExport, fuel.DefaultLimitExport} {
				if !bytes.Contains(out, []byte(g)) || bytes.Contains(w, []byte(g)) {
					t.Errorf("rewritten module: export %q not added", g)
				}
			}
		})
	}
}

// An AssemblyScript instance stays small across requests: thousands of
// calls of the trivial guest and of the jwtauth (claims loop included),
// pathrule and webhookfilter ports (which parse and write JSON on every
// event) leave it at its one page of linear memory: what a plugin allocates per
// request is collected by the incremental runtime (with --runtime stub it
// would pile up to the memory cap; RATIONALE "Why an AssemblyScript SDK").
// This bounds the memory; it does not show that the SDK's view forms
// allocate nothing (a guest that allocates a little per call passes too).
func TestASInstanceStaysOnePage(t *testing.T) {
	e := newEngine(t)
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "email": "a@example.com", "exp": time.Now().Add(time.Hour).Unix()})
	for _, tc := range []struct {
		guest string
		opts  hostabi.PluginOptions
		r     *req
	}{
		{"allow-as", hostabi.PluginOptions{}, &req{headers: hdr("X-User", "alice", "X-Role", "admin")}},
		{"jwtauth-as", hostabi.PluginOptions{Config: []byte(`{"claims":["email"]}`),
			Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true}, Secrets: map[string][]byte{"main": key}},
			&req{headers: hdr("Authorization", "Bearer "+tok)}},
		{"pathrule-as", hostabi.PluginOptions{Config: []byte(`{"allow_cidrs":["10.0.0.0/8","::/0"],"allow_paths":["/internal/"]}`),
			Caps: hostabi.Capabilities{Config: true}}, &req{source: "[2001:db8::1]:443", uri: "/internal/x"}},
		{"webhookfilter-as", hostabi.PluginOptions{Kind: hostabi.KindEvent, Config: []byte(`{"drop_codes":["X"],"forward_to":"app"}`),
			Caps: hostabi.Capabilities{Config: true}}, nil},
	} {
		t.Run(tc.guest, func(t *testing.T) {
			o := tc.opts
			o.PoolSize = 1
			p := load(t, e, tc.guest, o)
			ev := hostabi.Event{Tenant: "t1", User: "alice", ItemState: "ok",
				Body: []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","error":{"error_code":"ITEM_LOGIN_REQUIRED","status":400},"n":[1.5,1e300]}`)}
			for i := range 5000 {
				if o.Kind == hostabi.KindEvent {
					if res, err := p.HandleEvent(context.Background(), ev); err != nil || res.Action != hostabi.ActionForward {
						t.Fatalf("call %d = %+v, %v", i, res, err)
					}
					continue
				}
				if d, err := p.Authenticate(context.Background(), tc.r); err != nil || !d.Allow {
					t.Fatalf("call %d = %+v, %v", i, d, err)
				}
			}
			if n, b := hostabi.InstanceMemory(p); n != 1 || b != 1<<16 {
				t.Errorf("after 5000 calls: %d instances, %d bytes of linear memory; want 1, 65536", n, b)
			}
		})
	}
}
