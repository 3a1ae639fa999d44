package proxy

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestContended(t *testing.T) {
	t.Parallel()
	// Buckets: [0, 10µs), [10µs, 50µs), [50µs, 1ms), [1ms, +Inf).
	buckets := []float64{0, 10e-6, 50e-6, 1e-3, 1e300}
	for _, tc := range []struct {
		name       string
		prev, cur  []uint64
		shortOfCPU bool
	}{
		{"no waits", nil, []uint64{0, 0, 0, 0}, false},
		{"too few to tell", nil, []uint64{0, 0, 10, 5}, false},
		{"short waits", nil, []uint64{900, 80, 10, 0}, false},
		{"a fifth long", nil, []uint64{60, 20, 15, 5}, true},
		{"mostly long", nil, []uint64{10, 10, 50, 30}, true},
		// Only the waits since the last look count: the history was idle,
		// the window is not.
		{"busy window after an idle history", []uint64{100000, 1000, 10, 0}, []uint64{100010, 1010, 60, 30}, true},
		{"idle window after a busy history", []uint64{10, 10, 50000, 9000}, []uint64{1010, 110, 50002, 9000}, false},
		{"prev shorter than cur", []uint64{5}, []uint64{5, 0, 40, 0}, true},
	} {
		if got := contended(tc.prev, tc.cur, buckets); got != tc.shortOfCPU {
			t.Errorf("%s: contended = %v, want %v", tc.name, got, tc.shortOfCPU)
		}
	}
}

// Goroutines that keep more threads busy than there are CPUs make the
// watch report a process short of CPU (read from the runtime's own
// histogram, not faked). Only that direction is asserted: other packages'
// tests share the machine, so an idle answer cannot be promised here.
func TestSchedWatchSeesGoroutinesWaitForCPU(t *testing.T) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for t0 := time.Now(); time.Since(t0) < 200*time.Microsecond; { // busy
				}
				runtime.Gosched() // to the back of the queue: the others run first
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	var w schedWatch
	w.saturated(time.Now()) // the first look counts from the process's start
	for i := 0; ; i++ {     // bounded: 50 looks, 60 ms apart
		time.Sleep(60 * time.Millisecond)
		if w.saturated(time.Now()) {
			return
		}
		if i == 50 {
			t.Fatal("never short of CPU with 4 busy goroutines a CPU")
		}
	}
}

// Looks closer together than schedWindow answer the last reading
// without reading the histogram again.
func TestSchedWatchReadsOncePerWindow(t *testing.T) {
	t.Parallel()
	var w schedWatch
	now := time.Now()
	w.saturated(now)
	w.busy.Store(true) // what a read would not produce on its own
	if !w.saturated(now.Add(schedWindow / 2)) {
		t.Fatal("a look inside the window read the histogram again")
	}
	if w.at != now {
		t.Fatalf("the reading's time moved to %v inside the window", w.at)
	}
	w.saturated(now.Add(schedWindow))
	if !w.at.Equal(now.Add(schedWindow)) {
		t.Fatal("a look after the window did not read the histogram")
	}
}
