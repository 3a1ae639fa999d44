package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/hostabi"
)

// A plugin that denies with a 5xx ("I cannot decide") fails closed as a
// plugin failure: 503 auth_unavailable, counted, never a 403.
func TestPluginDeny5xxIsAFailure(t *testing.T) {
	for _, g := range []string{"apikey", "apikey-as"} {
		t.Run(g, func(t *testing.T) { testPluginDeny5xx(t, g) })
	}
}

func testPluginDeny5xx(t *testing.T, guest string) {
	t.Parallel()
	eng := pluginEngine(t)
	p, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "cfg", Name: guest, Wasm: guestWasm(t, guest), PoolSize: 1, Timeout: 5 * time.Second,
		Caps:   hostabi.Capabilities{Config: true, Crypto: true},
		Config: []byte(`["not", "an", "object"]`), // the example answers Deny(503) on bad config
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	up := echoUpstream(t)
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("cfg", p, up.URL, plaidURL)}
	}})
	r := e.do("GET", "cfg.test", "/app", "k", nil)
	if r.status != 503 || r.errCode(t) != "auth_unavailable" {
		t.Errorf("plugin Deny(503) = %d %s; want 503 auth_unavailable", r.status, r.body)
	}
	if n := testutil.ToFloat64(e.srv.metrics.authFailures.WithLabelValues("cfg", "deny_5xx")); n != 1 {
		t.Errorf("auth failures deny_5xx = %v, want 1", n)
	}
}

// The plugin sees IPv6 clients as "[ip]:port", which netip.ParseAddrPort reads.
func TestSourceAddrIPv6HasBrackets(t *testing.T) {
	var c fasthttp.RequestCtx
	c.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, nil)
	r := &reqView{ctx: &c}
	if got := string(r.SourceAddr()); got != "[2001:db8::1]:443" {
		t.Errorf("SourceAddr = %q, want [2001:db8::1]:443", got)
	}
	var c4 fasthttp.RequestCtx
	c4.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 80}, nil)
	r4 := &reqView{ctx: &c4}
	if got := string(r4.SourceAddr()); got != "10.0.0.1:80" {
		t.Errorf("SourceAddr = %q, want 10.0.0.1:80", got)
	}
}
