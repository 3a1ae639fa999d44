package proxy

import (
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// schedWatch tells whether the process is short of CPU: whether, since it
// last looked, goroutines waited for a thread. It reads the Go scheduler's
// own histogram of the time runnable goroutines waited before they ran
// (runtime/metrics "/sched/latencies:seconds"), at most once a
// schedWindow, so asking costs an atomic load almost always.
//
// Pacing asks it (paceForIntake): many webhooks waiting for the store
// make a burst only when the machine is the bottleneck. Under a slow
// store (PostgreSQL across a network, a disk whose fsync takes
// milliseconds) webhooks wait with the CPU idle, and resting the workers
// would slow forwarding and speed nothing up. Measured on the 2-core VM
// (BenchmarkWebhookIntake): while intake saturated it, 53–59% of the
// sampled waits were 50 µs or longer; with one goroutine busy, 1–2%.
type schedWatch struct {
	mu     sync.Mutex // held by the one reader; others use busy as it is
	at     time.Time  // when the histogram was last read
	prev   []uint64   // its counts then
	sample [1]rtmetrics.Sample
	busy   atomic.Bool
}

const (
	schedWindow = 50 * time.Millisecond // least time between two reads
	schedWait   = 50e-6                 // seconds: a wait this long means no free CPU
	schedShare  = 0.2                   // of the waits since the last read, this many that long: short of CPU
	schedMin    = 20                    // fewer waits than this are too few to tell (an idle process)
)

// saturated reports whether the process was short of CPU lately; now is
// the caller's clock reading.
func (w *schedWatch) saturated(now time.Time) bool {
	if !w.mu.TryLock() {
		return w.busy.Load()
	}
	defer w.mu.Unlock()
	if !w.at.IsZero() && now.Sub(w.at) < schedWindow {
		return w.busy.Load()
	}
	w.at = now
	w.sample[0].Name = "/sched/latencies:seconds"
	rtmetrics.Read(w.sample[:])
	if w.sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return false // a runtime without the metric: never short of CPU
	}
	h := w.sample[0].Value.Float64Histogram()
	w.busy.Store(contended(w.prev, h.Counts, h.Buckets))
	w.prev = append(w.prev[:0], h.Counts...)
	return w.busy.Load()
}

// contended reports whether, of the waits the histogram counted between
// prev and cur (counts per bucket; bucket i holds waits from buckets[i] to
// buckets[i+1] seconds), at least schedMin were counted and schedShare of
// them lasted schedWait or longer. A nil or shorter prev counts from zero.
func contended(prev, cur []uint64, buckets []float64) bool {
	var all, long uint64
	for i, c := range cur {
		if i < len(prev) {
			c -= min(c, prev[i])
		}
		all += c
		if i < len(buckets) && buckets[i] >= schedWait {
			long += c
		}
	}
	return all >= schedMin && float64(long) >= schedShare*float64(all)
}
