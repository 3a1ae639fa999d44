package hostabi_test

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// memFigures are what one warm pooled instance of an example plugin costs,
// and what its plugin costs once whatever its pool size.
type memFigures struct {
	linear float64 // linear memory (pages in use) per instance
	heap   float64 // Go heap per instance: linear memory and wazero's instance
	rss    float64 // process RSS per instance (0 where VmRSS is unknown)
	plugin float64 // Go heap of the plugin beside its instances: its runtime, decoded module, host modules
}

// instanceMemory loads the plugin twice, with a pool of 1 and then of
// poolBig, and counts the difference per extra instance, so what a plugin
// holds once (its runtime, decoded module, host modules) is not spread
// over its instances. The compiled code is shared by every plugin of the
// engine and not counted. Heap figures are live heap after a GC; RSS
// figures are VmRSS after debug.FreeOSMemory, so freed heap the runtime has
// not yet returned does not count, and memory outside the Go heap does.
func instanceMemory(tb testing.TB, name string) memFigures {
	tb.Helper()
	const poolBig = 9
	o := hostabi.PluginOptions{Timeout: 5 * time.Second,
		Caps:    hostabi.Capabilities{Config: true, Log: true, Crypto: true, KV: true},
		Secrets: map[string][]byte{"main": []byte("tenant-jwt-secret-0123456789abcd")}}
	if name == "webhookfilter" || name == "webhookfilter-as" {
		o.Kind = hostabi.KindEvent
	}
	e := newEngine(tb)
	measure := func() (heap, rss float64) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		r, _ := vmRSS()
		return float64(ms.HeapAlloc), float64(r)
	}
	loadPool := func(pool int) *hostabi.Plugin {
		o := o
		o.PoolSize = pool
		return load(tb, e, name, o)
	}
	loadPool(1).Close(context.Background()) // warms the compile cache and the engine
	h0, r0 := measure()
	loadPool(1)
	h1, r1 := measure()
	pn := loadPool(poolBig)
	h2, r2 := measure()
	n, lin := hostabi.InstanceMemory(pn)
	if n != poolBig {
		tb.Fatalf("%s: %d instances, want %d", name, n, poolBig)
	}
	f := memFigures{linear: float64(lin) / float64(n)}
	f.heap = ((h2 - h1) - (h1 - h0)) / (poolBig - 1)
	f.plugin = (h1 - h0) - f.heap
	if r0 > 0 {
		f.rss = ((r2 - r1) - (r1 - r0)) / (poolBig - 1)
	}
	return f
}

// vmRSS reads the process's resident set size from /proc/self/status
// (Linux); ok is false elsewhere.
func vmRSS() (n uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// TestInstanceMemory is BenchmarkInstanceMemory's check: every example
// plugin's instance holds some linear memory and heap, and beside its
// linear memory an instance holds less than 512 KiB of Go heap (issue 12:
// with Go's ~36,000 data segments unmerged, wazero's per-segment slice
// headers alone were 0.86 MB an instance). The totals are reported by the
// benchmark, not asserted; the goal is ≤ 4 MiB.
func TestInstanceMemory(t *testing.T) {
	for _, name := range append(slices.Clone(exampleNames), "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as") {
		f := instanceMemory(t, name)
		if f.linear <= 0 || f.heap <= 0 {
			t.Errorf("%s: linear %.0f B, heap %.0f B per instance; want both > 0", name, f.linear, f.heap)
		}
		if over := f.heap - f.linear; over > 512<<10 {
			t.Errorf("%s: %.0f B of heap per instance beside %.0f B of linear memory; want < 512 KiB", name, over, f.linear)
		}
	}
}

// BenchmarkInstanceMemory reports, for each example plugin, what one warm
// pooled instance holds: its linear memory (linear-B/instance), the Go
// heap it keeps live in all (heap-B/instance), the process RSS it adds
// (rss-B/instance), and the heap its plugin holds once beside its
// instances (plugin-heap-B). Issue 12: goal ≤ 4 MiB an instance. The loop
// itself does nothing; the figures are the setup's.
func BenchmarkInstanceMemory(b *testing.B) {
	for _, name := range append(slices.Clone(exampleNames), "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as") {
		b.Run(name, func(b *testing.B) {
			f := instanceMemory(b, name)
			for b.Loop() {
			}
			b.ReportMetric(f.linear, "linear-B/instance")
			b.ReportMetric(f.heap, "heap-B/instance")
			b.ReportMetric(f.rss, "rss-B/instance")
			b.ReportMetric(f.plugin, "plugin-heap-B")
			b.ReportMetric(0, "ns/op")
		})
	}
}
