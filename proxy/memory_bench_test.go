package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// vmRSS reads the process's resident set size from /proc/self/status
// (Linux); ok is false elsewhere.
func vmRSS() (bytes_ uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := bytes.Fields(sc.Bytes()); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			kb, err := strconv.ParseUint(string(f[1]), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// tenantsRSS starts one Safeclose server with n tenants, each with its own
// jwtauth plugin and a pool of pool instances, and returns the process RSS
// before the plugins were loaded and with everything up.
func tenantsRSS(tb testing.TB, n, pool int) (before, after uint64) {
	tb.Helper()
	before, ok := vmRSS()
	if !ok {
		tb.Skip("no /proc/self/status here")
	}
	up := "http://" + benchUpstream(tb)
	eng, err := hostabi.NewEngine(context.Background(), hostabi.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close(context.Background()) })
	var ts []Tenant
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		p, err := eng.Load(context.Background(), hostabi.PluginOptions{
			Tenant: name, Name: "jwtauth", Wasm: guestWasmTB(tb, "jwtauth"), PoolSize: pool, Timeout: 5 * time.Second,
			Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true}, Secrets: map[string][]byte{"main": []byte("bench-secret-0123456789abcdef012")},
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close(context.Background()) })
		ts = append(ts, pluginTenant(name, p, up, ""))
	}
	e := startEnv(tb, envConfig{upstream: up, tenantsFn: func(_, plaidURL string) []Tenant {
		for i := range ts {
			ts[i].Plaid.BaseURL = plaidURL
		}
		return ts
	}})
	// One request, answered: the server is up (and the env's Shutdown does
	// not race its Serve).
	if r := e.do("GET", "m0.test", "/", "", nil); r.status != 401 {
		tb.Fatalf("GET without a token = %d, want 401", r.status)
	}
	after, _ = vmRSS()
	return before, after
}

// TestTenantsRSS is BenchmarkTenantsRSS's check: the harness starts.
func TestTenantsRSS(t *testing.T) {
	if b, a := tenantsRSS(t, 2, 1); a == 0 || b == 0 {
		t.Errorf("VmRSS before %d, after %d; want both > 0", b, a)
	}
}

// BenchmarkTenantsRSS reports the process RSS with 10 tenants × pool 4
// (jwtauth), and how much of it came with the tenants (issue 12.5:
// reported, not asserted). The test binary's own RSS is in rss-MiB.
func BenchmarkTenantsRSS(b *testing.B) {
	before, after := tenantsRSS(b, 10, 4)
	for b.Loop() {
	}
	b.ReportMetric(float64(after)/(1<<20), "rss-MiB")
	b.ReportMetric((float64(after)-float64(before))/(1<<20), "tenants-MiB")
	b.ReportMetric(0, "ns/op")
}
