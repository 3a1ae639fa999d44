package hostabi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// waitInstances waits (bounded: 60 s) until p holds n instances again.
func waitInstances(t *testing.T, p *hostabi.Plugin, n uint64) {
	t.Helper()
	for i := 0; p.Stats().Instances < n; i++ {
		if i == 6000 {
			t.Fatalf("pool never refilled to %d: %+v", n, p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A guest that keeps a little more memory on every call reaches its memory
// cap after a fixed number of calls; its instance traps, is discarded and a
// fresh one serves. Every instance of a pool is used in turn, so they all
// fill up at about the same call: more traps in a row than PenaltyAfter.
// The box opens; once the fresh instances are in, the first probe must
// succeed, not run on the next worn-out instance and reopen the box for
// twice as long, once per worn-out instance left (1+2+4+8+16+30+… s of 503s
// for a tenant whose plugin works on every fresh instance).
func TestLeakingGuestRecoversAfterOneWindow(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	const pool = 8
	p := load(t, e, "leak", hostabi.PluginOptions{PoolSize: pool, MemoryLimitPages: 256})
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	hostabi.SetPenaltyClock(p, clk.Now)
	r := &req{}
	var traps, probes int
	for i := 0; ; i++ {
		if i == 20000 {
			t.Fatalf("no instance reached its memory cap in %d calls: %+v", i, p.Stats())
		}
		_, err := p.Authenticate(context.Background(), r)
		if err == nil {
			if traps > 0 && !p.Stats().InPenaltyBox {
				break
			}
			continue
		}
		switch {
		case isTrap(err):
			traps++
		case errors.Is(err, hostabi.ErrPenalty):
			// Let the discarded instances be replaced, then end the window.
			waitInstances(t, p, pool)
			clk.Add(time.Minute)
			probes++
			if probes > 1 {
				t.Errorf("probe %d: the box reopened after its first window", probes)
			}
		default:
			t.Fatalf("call %d = %v, want nil, a trap or ErrPenalty", i, err)
		}
	}
	s := p.Stats()
	t.Logf("traps %d, probes %d, stats %+v", traps, probes, s)
}
