package hostabi

import (
	"runtime"
	"sync/atomic"
	"time"
)

// cpuShare bounds the guest CPU a plugin's calls use on average
// (PluginOptions.CPUShare, in cores), so a plugin that spins just inside its
// deadline cannot keep the machine's cores to itself. Its calls never fail
// and never time out, so the penalty box never opens; and wazero's compiled
// code cannot be preempted by the Go scheduler, so each such call holds a
// core until it returns (the noisy-neighbour pass: a healthy tenant's
// requests took 70–300 ms instead of microseconds while another tenant's
// plugin spun 75 ms of each 100 ms deadline).
//
// The measure is the fuel a call burned (under EnforceFuel): fuel counts
// loop iterations and calls, so it is guest computation and nothing else,
// neither the host functions it waits in (a synced key/value write) nor
// the time it queued for a core. A unit costs 1/(share × fuel rate)
// seconds of the plugin's share, the fuel rate being the engine's
// calibrated units per second of the fastest code (what a spinning loop
// burns). The account is a GCRA, one atomic word: tat runs ahead of the
// call clock by the plugin's debt, and a call is admitted while the debt is
// at most burst (one second of the share). Over it, calls fail fast with
// ErrOverShare until enough time has passed.
type cpuShare struct {
	nsPerFuel float64 // share-nanoseconds one fuel unit costs
	burst     int64   // ns
	tat       atomic.Int64
	refused   atomic.Uint64
}

// DefaultCPUShare is a plugin's share when PluginOptions leaves it zero:
// half the cores Go runs on, at least one.
func DefaultCPUShare() float64 { return max(1, float64(runtime.GOMAXPROCS(0))/2) }

// DefaultCPUShareAmong is the share of each of n plugins loaded together
// that leave theirs unset: DefaultCPUShare, lowered so that together they
// leave a core to everything else (the proxy's own work, tenants without
// plugins, webhook intake), half a core on a one-core machine; never below
// MinDefaultCPUShare. Each plugin's share bounds it alone, so without this
// two spinning plugins at half the cores each could hold every core.
func DefaultCPUShareAmong(n int) float64 { return shareAmong(runtime.GOMAXPROCS(0), n) }

// MinDefaultCPUShare is the least default share, in cores: a tenth of a
// core is ~100,000 calls a second of a host-verified JWT check.
const MinDefaultCPUShare = 0.1

func shareAmong(cores, n int) float64 {
	single := max(1, float64(cores)/2)
	pool := max(float64(cores)-1, 0.5)
	return max(MinDefaultCPUShare, min(single, pool/float64(max(n, 1))))
}

// CPUShare is the plugin's share, in cores (its option, or the default it
// was given).
func (p *Plugin) CPUShare() float64 { return p.opts.CPUShare }

// cpuShareBurst is how far ahead of its share a plugin may run: a second
// of it.
const cpuShareBurst = time.Second

func newCPUShare(cores, fuelPerSec float64) *cpuShare {
	return &cpuShare{nsPerFuel: 1e9 / (cores * fuelPerSec), burst: int64(cpuShareBurst)}
}

// over reports whether the plugin's debt at now is past the burst. A nil
// share (no fuel, so nothing to measure) is never over.
func (c *cpuShare) over(now time.Duration) bool {
	if c == nil || c.tat.Load()-int64(now) <= c.burst {
		return false
	}
	c.refused.Add(1)
	return true
}

// spend charges fuel units burned by a call admitted at now.
func (c *cpuShare) spend(now time.Duration, fuel int64) {
	if c == nil || fuel <= 0 {
		return
	}
	cost := int64(float64(fuel) * c.nsPerFuel)
	for {
		old := c.tat.Load()
		if c.tat.CompareAndSwap(old, max(old, int64(now))+cost) {
			return
		}
	}
}
