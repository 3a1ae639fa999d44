package hostabi_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 9.13: out-of-range limits are errors, never a wazero panic or an
// unbounded pool (the CLI's `plugin run -memory-pages 99999999`).
func TestLoadRejectsOutOfRangeLimits(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	tests := []struct {
		name  string
		pages uint32
		pool  int
		ok    bool
	}{
		{name: "defaults", ok: true},
		{name: "max memory", pages: hostabi.MaxMemoryPages, pool: 1, ok: true},
		{name: "max pool", pages: 64, pool: hostabi.MaxPoolSize, ok: true},
		{name: "memory over max", pages: hostabi.MaxMemoryPages + 1, pool: 1},
		{name: "memory over wasm max", pages: 99999999, pool: 1},
		{name: "pool over max", pool: hostabi.MaxPoolSize + 1},
		{name: "negative pool", pool: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := e.Load(context.Background(), hostabi.PluginOptions{
				Tenant: "t1", Name: "allow", Wasm: wasm(t, "allow"), MemoryLimitPages: tt.pages, PoolSize: tt.pool,
			})
			if tt.ok {
				if err != nil {
					t.Fatalf("Load(pages %d, pool %d) = %v, want nil", tt.pages, tt.pool, err)
				}
				if n := p.Stats().Instances; n < 1 || n > hostabi.MaxPoolSize {
					t.Errorf("Instances = %d, want 1..%d", n, hostabi.MaxPoolSize)
				}
				p.Close(context.Background())
				return
			}
			if !errors.Is(err, hostabi.ErrLimits) || !errors.Is(err, hostabi.ErrRefused) {
				t.Fatalf("Load(pages %d, pool %d) = %v, want ErrLimits and ErrRefused", tt.pages, tt.pool, err)
			}
		})
	}
}

// Issue 9.13: a call that returns after its deadline fails closed and its
// instance is discarded, even though the guest returned "allow". The clock
// jumps an hour between the call's start and its end, standing in for a
// memory.grow that wazero cannot interrupt.
func TestLateResultIsNeverUsed(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	p := load(t, e, "allow", hostabi.PluginOptions{PoolSize: 1})
	var reads atomic.Int64
	var jump atomic.Bool
	jump.Store(true)
	hostabi.SetCallClock(p, func() time.Time {
		now := time.Now()
		if reads.Add(1)%2 == 0 && jump.Load() {
			now = now.Add(time.Hour) // the read after the call
		}
		return now
	})
	d, err := p.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")})
	if !errors.Is(err, hostabi.ErrTimeout) || d.Allow {
		t.Fatalf("late call = %+v, %v; want ErrTimeout and no decision", d, err)
	}
	if s := p.Stats(); s.Timeouts != 1 {
		t.Errorf("Stats().Timeouts = %d, want 1", s.Timeouts)
	}
	jump.Store(false)
	// The instance was discarded; its replacement answers.
	d, err = p.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")})
	if err != nil || !d.Allow {
		t.Fatalf("call after the late one = %+v, %v; want allow", d, err)
	}
}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Issue 9.14: after PenaltyAfter consecutive timeouts the plugin fails fast
// without running its guest; after the window one probe runs; a failed
// probe doubles the window, a good one closes the box.
func TestPenaltyBoxFailsFastAndProbes(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	p := load(t, e, "loop", hostabi.PluginOptions{
		Timeout: 20 * time.Millisecond, PoolSize: 1,
		PenaltyAfter: 3, PenaltyBackoff: time.Second, PenaltyMaxBackoff: 3 * time.Second,
	})
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	hostabi.SetPenaltyClock(p, clk.Now)
	loop := &req{headers: hdr("X-Loop", "1")}
	good := &req{headers: hdr("X-User", "u")}
	call := func(r *req) error {
		t.Helper()
		// A timed-out instance is replaced in the background; wait for it
		// so the call is not ErrBusy (bounded: 60s).
		for i := 0; p.Stats().Instances < 1; i++ {
			if i == 6000 {
				t.Fatal("instance never replaced")
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, err := p.Authenticate(context.Background(), r)
		return err
	}
	for i := range 3 {
		if err := call(loop); !errors.Is(err, hostabi.ErrTimeout) {
			t.Fatalf("looping call %d = %v, want ErrTimeout", i, err)
		}
	}
	check := func(step string, wantErr error, wantCalls uint64, wantBox bool) {
		t.Helper()
		err := call(good)
		if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
			t.Fatalf("%s: call = %v, want %v", step, err, wantErr)
		}
		if s := p.Stats(); s.Calls != wantCalls || s.InPenaltyBox != wantBox {
			t.Fatalf("%s: Stats() Calls=%d InPenaltyBox=%v, want %d %v", step, s.Calls, s.InPenaltyBox, wantCalls, wantBox)
		}
	}
	// Open: even a call that would succeed fails fast, guest not run.
	check("open", hostabi.ErrPenalty, 3, true)
	clk.Add(999 * time.Millisecond)
	check("still open", hostabi.ErrPenalty, 3, true)
	clk.Add(time.Millisecond)
	// The probe runs and fails: the window doubles to 2s.
	if err := call(loop); !errors.Is(err, hostabi.ErrTimeout) {
		t.Fatalf("probe = %v, want ErrTimeout", err)
	}
	clk.Add(1500 * time.Millisecond)
	check("reopened, doubled window", hostabi.ErrPenalty, 4, true)
	clk.Add(500 * time.Millisecond)
	// A good probe closes the box.
	check("good probe", nil, 5, false)
	check("closed", nil, 6, false)
	if s := p.Stats(); s.PenaltyOpens != 2 || s.Penalized != 3 {
		t.Errorf("Stats() PenaltyOpens=%d Penalized=%d, want 2 3", s.PenaltyOpens, s.Penalized)
	}
	// One success resets the count: two more timeouts do not open the box.
	for range 2 {
		if err := call(loop); !errors.Is(err, hostabi.ErrTimeout) {
			t.Fatalf("looping call = %v, want ErrTimeout", err)
		}
	}
	check("two failures after a success", nil, 9, false)
}

// Issue 9.14: while tenant A's guest loops forever under continuous load,
// its penalty box keeps it from running more than its probes, and tenant B
// keeps its latency. The guest-run count is the deterministic assertion;
// B's p99 against its baseline from the same run is logged and checked
// loosely (2 shared cores under -race).
func TestPenaltyBoxProtectsOtherTenants(t *testing.T) {
	start := time.Now()
	e := newEngine(t)
	const backoff = 500 * time.Millisecond
	a := load(t, e, "loop", hostabi.PluginOptions{
		Tenant: "a", Timeout: 50 * time.Millisecond, PoolSize: 2,
		PenaltyAfter: 5, PenaltyBackoff: backoff, PenaltyMaxBackoff: 2 * time.Second,
	})
	b := load(t, e, "allow", hostabi.PluginOptions{Tenant: "b", PoolSize: 2})
	sample := func(minN int, minDur time.Duration) ([]time.Duration, time.Duration) {
		var lat []time.Duration
		t0 := time.Now()
		for i := 0; i < 200_000 && (i < minN || time.Since(t0) < minDur); i++ {
			s := time.Now()
			d, err := b.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")})
			lat = append(lat, time.Since(s))
			if err != nil || !d.Allow {
				t.Fatalf("tenant B call %d = %+v, %v", i, d, err)
			}
		}
		return lat, time.Since(t0)
	}
	t.Logf("loaded at %v", time.Since(start))
	sample(300, 0) // warm up
	base, _ := sample(3000, 0)

	t.Logf("baseline done at %v", time.Since(start))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := a.Authenticate(context.Background(), &req{headers: hdr("X-Loop", "1")}); err == nil {
					t.Error("looping guest answered")
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for i := 0; !a.Stats().InPenaltyBox; i++ {
		if i == 2000 {
			t.Fatalf("tenant A never entered its penalty box: %+v", a.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := a.Stats()
	t.Logf("tenant A entered its penalty box after %d calls at %v", before.Calls, time.Since(start))
	during, window := sample(3000, 3*time.Second)
	after := a.Stats()

	// Only half-open probes run the guest while the box is open: at most one
	// per backoff window, plus one that was admitted as the window began.
	ran := after.Calls - before.Calls
	if bound := uint64(window/backoff) + 2; ran > bound {
		t.Errorf("tenant A's looping guest ran %d times in %v with its penalty box open; want <= %d", ran, window, bound)
	}
	if after.Penalized == before.Penalized {
		t.Error("no call of tenant A failed fast")
	}
	pb, pd := p99(base), p99(during)
	t.Logf("tenant B p99: baseline %v (%d calls), while A misbehaves %v (%d calls), ratio %.2f; A ran %d times in %v",
		pb, len(base), pd, len(during), float64(pd)/float64(pb), ran, window)
	if pd > 10*pb && pd > 10*time.Millisecond {
		t.Errorf("tenant B p99 %v while A misbehaves, baseline %v: more than 10x (the goal is 2x)", pd, pb)
	}
}

func p99(lat []time.Duration) time.Duration {
	s := append([]time.Duration(nil), lat...)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// Issue 9.13: unbounded recursion in a Go guest grows its goroutine stack,
// which lives in linear memory, so the memory cap stops it: the call traps
// and the host survives. (wazero's native call stack grows alongside, up
// to its fixed ceiling; see ABI.md §5.)
func TestDeepRecursionStopsAtMemoryCap(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	p := load(t, e, "deeprec", hostabi.PluginOptions{PoolSize: 1, MemoryLimitPages: 256})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := p.Authenticate(context.Background(), &req{headers: hdr("X-Recurse", "1")})
	runtime.ReadMemStats(&after)
	var te *hostabi.TrapError
	if errors.Is(err, hostabi.ErrTimeout) {
		// Slow stack copies under -race can reach the 5s deadline first;
		// that fails closed too.
		t.Logf("unbounded recursion timed out: %v", err)
		return
	}
	if !errors.As(err, &te) {
		t.Fatalf("unbounded recursion = %v, want a TrapError", err)
	}
	msg, _, _ := strings.Cut(te.Err.Error(), "\n")
	line, _, _ := strings.Cut(te.Stderr, "\n")
	t.Logf("trap: %s; stderr: %s; host heap grew %d MiB", msg, line, (after.HeapSys-before.HeapSys)>>20)
	if d, err := p.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")}); err != nil || !d.Allow {
		t.Fatalf("call after the trap = %+v, %v", d, err)
	}
}
