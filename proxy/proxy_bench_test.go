package proxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/cputime"
)

// benchUpstream is the app: a fasthttp server answering 200 with a small
// body, on loopback.
func benchUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("hello from upstream\n")
	}}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

// plainProxy is the baseline: a fasthttp reverse proxy with no auth, as in
// ../shared/perf-anchors (rp-fasthttp).
func plainProxy(tb testing.TB, upstream string) string {
	tb.Helper()
	hc := &fasthttp.HostClient{Addr: upstream, MaxConns: 512}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

type benchTarget struct {
	name, addr, host string
	hdr              [][2]string
}

// proxyTargets starts the baseline and Safeclose with built-in API keys,
// with the allow guest (header identity) and with the jwtauth example.
func proxyTargets(tb testing.TB) []benchTarget {
	up := benchUpstream(tb)
	eng, err := hostabi.NewEngine(context.Background(), hostabi.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close(context.Background()) })
	load := func(tenant, name string, o hostabi.PluginOptions) *hostabi.Plugin {
		o.Tenant, o.Name, o.Wasm = tenant, name, guestWasmTB(tb, name)
		o.Timeout = 5 * time.Second // TestProxyTargetsAnswer also runs under -race on busy cores
		p, err := eng.Load(context.Background(), o)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close(context.Background()) })
		return p
	}
	allow := load("wasm", "allow", hostabi.PluginOptions{})
	secret := []byte("bench-secret-0123456789abcdef012")
	jwtp := load("jwt", "jwtauth", hostabi.PluginOptions{Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
		Secrets: map[string][]byte{"main": secret}})
	jwtc := load("jwtc", "jwtauth", hostabi.PluginOptions{Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
		Secrets: map[string][]byte{"main": secret}, CacheTTL: 30 * time.Second})
	tok := mintHS256(secret, "alice", time.Now().Add(time.Hour))
	upURL := "http://" + up
	e := startEnv(tb, envConfig{upstream: upURL, tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(tb, base[len("http://"):], plaidURL, upURL, nil)
		return append(ts, pluginTenant("wasm", allow, upURL, plaidURL), pluginTenant("jwt", jwtp, upURL, plaidURL),
			pluginTenant("jwtc", jwtc, upURL, plaidURL))
	}})
	logged := startEnv(tb, envConfig{upstream: upURL, optsFn: func(o *Options) { // Issue 13.2: access log on
		o.AccessLog = io.Discard
	}})
	return []benchTarget{
		{"rp-fasthttp", plainProxy(tb, up), "any", nil},
		{"safeclose-apikey", e.addr, "t1.test", [][2]string{{"Authorization", "Bearer alice-key"}}},
		{"safeclose-apikey-accesslog", logged.addr, "t1.test", [][2]string{{"Authorization", "Bearer alice-key"}}},
		{"safeclose-wasm-header", e.addr, "wasm.test", [][2]string{{"X-User", "alice"}}},
		{"safeclose-wasm-jwt", e.addr, "jwt.test", [][2]string{{"Authorization", "Bearer " + tok}}},
		{"safeclose-wasm-jwt-cached", e.addr, "jwtc.test", [][2]string{{"Authorization", "Bearer " + tok}}},
	}
}

func doGet(c *fasthttp.HostClient, t benchTarget, req *fasthttp.Request, res *fasthttp.Response) (int, error) {
	req.Reset()
	req.SetRequestURI("http://" + t.host + "/app/orders")
	for _, h := range t.hdr {
		req.Header.Set(h[0], h[1])
	}
	err := c.Do(req, res)
	return res.StatusCode(), err
}

// TestProxyTargetsAnswer is the benchmark's check: each target answers 200
// through to the upstream.
func TestProxyTargetsAnswer(t *testing.T) {
	t.Parallel()
	for _, tg := range proxyTargets(t) {
		c := &fasthttp.HostClient{Addr: tg.addr}
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		st, err := doGet(c, tg, req, res)
		if err != nil || st != 200 || string(res.Body()) != "hello from upstream\n" {
			t.Errorf("%s: %d %q %v", tg.name, st, res.Body(), err)
		}
	}
}

// BenchmarkProxy: requests per second through Safeclose (built-in keys,
// Wasm plugins) and through a plain fasthttp reverse proxy, same run, same
// upstream, 32 concurrent keep-alive connections on loopback. Compare the
// req/s metrics as ratios.
func BenchmarkProxy(b *testing.B) {
	for _, tg := range proxyTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			c := &fasthttp.HostClient{Addr: tg.addr, MaxConns: 32}
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			t0, cpu0 := time.Now(), cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				for pb.Next() {
					if st, err := doGet(c, tg, req, res); err != nil || st != 200 {
						b.Errorf("%s: %d %v", tg.name, st, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
			// The whole process's CPU per request: client, proxy and upstream
			// (one process), so compare differences, not ratios. Steadier
			// than req/s on a shared machine.
			if cpu := cputime.Process() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
