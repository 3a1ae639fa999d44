package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 9.14: a plugin that keeps timing out goes to its penalty box:
// requests get the generic 503 auth_unavailable without the guest running,
// counted as safeclose_auth_failures_total{reason="penalty"}, while another
// tenant is served.
func TestPenaltyBoxFailsFastWith503(t *testing.T) {
	t.Parallel()
	eng := pluginEngine(t)
	up := echoUpstream(t)
	bad, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "boxed", Name: "loop", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "loop"), PoolSize: 2,
		Timeout: 50 * time.Millisecond, PenaltyAfter: 2, PenaltyBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bad.Close(context.Background()) })
	good := loadPlugin(t, eng, "good", "allow", hostabi.KindAuth, 5*time.Second)
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("boxed", bad, up.URL, plaidURL), pluginTenant("good", good, up.URL, plaidURL)}
	}})
	var first string
	for i := range 20 {
		st, body, err := rawGet(e.base, "boxed.test", "X-Loop", "1")
		if err != nil {
			t.Fatal(err)
		}
		if st != 503 || !strings.Contains(body, `"auth_unavailable"`) {
			t.Fatalf("request %d = %d %s, want 503 auth_unavailable", i, st, body)
		}
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("request %d body %s differs from the first failure's %s (must be generic)", i, body, first)
		}
		if st, body, err := rawGet(e.base, "good.test", "X-User", "carol"); err != nil || st != 200 {
			t.Fatalf("good tenant = %d %s %v", st, body, err)
		}
	}
	// Sequential requests, pool of 2: two timeouts open the box; a busy
	// answer (instance not yet replaced) runs no guest either.
	if s := bad.Stats(); s.Calls != 2 || !s.InPenaltyBox || s.Penalized == 0 {
		t.Errorf("Stats() = %+v; want the guest run exactly twice, then the box open", s)
	}
	if n := testutil.ToFloat64(e.srv.metrics.authFailures.WithLabelValues("boxed", "penalty")); n < 1 {
		t.Errorf(`safeclose_auth_failures_total{tenant="boxed",reason="penalty"} = %v, want > 0`, n)
	}
}

// A tenant whose plugin spins inside its deadline is held to its CPU
// share: once over it, its requests get 503 auth_unavailable at once,
// counted as cpu_share, while another tenant is served.
func TestSpinningPluginOverItsShareFailsClosed(t *testing.T) {
	t.Parallel()
	eng := pluginEngine(t)
	spin, err := eng.Load(t.Context(), hostabi.PluginOptions{
		Tenant: "s", Name: "spin", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "spin"), PoolSize: 1,
		Timeout: 5 * time.Second, CPUShare: 1e-6, // one spinning call is far over a second of it
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spin.Close(context.Background()) })
	up := echoUpstream(t)
	e := startEnv(t, envConfig{upstream: up.URL, tenantsFn: func(base, plaidURL string) []Tenant {
		return append(defaultTenants(t, base[len("http://"):], plaidURL, up.URL, nil), pluginTenant("s", spin, up.URL, plaidURL))
	}})
	if r := e.do("GET", "s.test", "/x", "", nil, "X-Iters", "1000000"); r.status != 200 {
		t.Fatalf("first spinning request: %d %s", r.status, r.body)
	}
	for range 3 {
		if r := e.do("GET", "s.test", "/x", "", nil, "X-Iters", "1000000"); r.status != 503 || r.errCode(t) != "auth_unavailable" {
			t.Fatalf("over its share: %d %s; want 503 auth_unavailable", r.status, r.body)
		}
	}
	if n := testutil.ToFloat64(e.srv.metrics.authFailures.WithLabelValues("s", "cpu_share")); n != 3 {
		t.Errorf("auth failures{cpu_share} = %v, want 3", n)
	}
	if r := e.do("GET", "t1.test", "/x", "alice-key", nil); r.status != 200 {
		t.Fatalf("another tenant: %d %s", r.status, r.body)
	}
}
