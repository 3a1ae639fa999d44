package main

import (
	"os"
	"path/filepath"
	"testing"
)

// load.sh's summary: target, median req/s, p99, and (since the CPU column)
// CPU-µs per request; an older three-column file still reads, without CPU.
func TestParseLoadWithCPU(t *testing.T) {
	p := filepath.Join(t.TempDir(), "load.tsv")
	data := "rp-fasthttp\t37576\t2.92ms\t28.0\nnginx-plain\t43177\t2.57ms\nsafeclose\t35698\t3.1ms\t30.2\n" +
		"pair:safeclose/rp-fasthttp\t0.9712\n\nbad line\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	load := parseLoad(p)
	if load["rp-fasthttp"] != 37576 || load["rp-fasthttp"+cpuSuffix] != 28 || load["nginx-plain"] != 43177 {
		t.Fatalf("parseLoad = %v", load)
	}
	if _, ok := load["nginx-plain"+cpuSuffix]; ok {
		t.Fatalf("a three-column line got a CPU figure: %v", load)
	}
	if got, want := withCPU(load, "rp-fasthttp"), "37576 req/s, 28.0 CPU-µs/req"; got != want {
		t.Errorf("withCPU = %q, want %q", got, want)
	}
	if got, want := withCPU(load, "nginx-plain"), "43177 req/s"; got != want {
		t.Errorf("withCPU without CPU = %q, want %q", got, want)
	}
	// The paired ratio (median of per-round ratios) stands beside the
	// ratio of the medians; a pair load.sh did not write shows alone.
	if got, want := loadRatio(load, "safeclose", "rp-fasthttp"), "0.95× (per round 0.97×)"; got != want {
		t.Errorf("loadRatio = %q, want %q", got, want)
	}
	if got, want := loadRatio(load, "nginx-plain", "rp-fasthttp"), "1.15×"; got != want {
		t.Errorf("loadRatio without a pair = %q, want %q", got, want)
	}
}
