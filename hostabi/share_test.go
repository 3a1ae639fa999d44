package hostabi_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// A plugin that spins within its deadline never fails, so its penalty box
// never opens, yet each call holds a core the Go scheduler cannot take
// back (the noisy-neighbour pass). Its guest computation is charged
// against its CPU share: once a second of the share is spent ahead, its
// calls fail fast with ErrOverShare, without running the guest, until
// time pays the debt; another plugin is not touched, and nothing counts
// toward the penalty box.
func TestSpinningPluginIsHeldToItsCPUShare(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	// A millionth of a core: one spinning call costs far more than the
	// second of share a plugin may run ahead.
	spin := load(t, e, "spin", hostabi.PluginOptions{CPUShare: 1e-6, Timeout: 10 * time.Second})
	hostabi.SetCallClock(spin, clock)
	other := load(t, e, "allow", hostabi.PluginOptions{})
	r := bytesReq(hdr("X-Iters", "1000000", "X-User", "u"))

	if d, err := spin.Authenticate(context.Background(), r); err != nil || !d.Allow {
		t.Fatalf("first spinning call: %+v, %v", d, err)
	}
	for i := range 3 {
		if _, err := spin.Authenticate(context.Background(), r); !errors.Is(err, hostabi.ErrOverShare) {
			t.Fatalf("call %d over the share: %v, want ErrOverShare", i, err)
		}
	}
	st := spin.Stats()
	if st.Calls != 1 || st.OverShare != 3 || st.InPenaltyBox || st.PenaltyOpens != 0 {
		t.Fatalf("stats %+v: want 1 guest call, 3 refused, penalty box untouched", st)
	}
	if d, err := other.Authenticate(context.Background(), bytesReq(hdr("X-User", "alice"))); err != nil || !d.Allow {
		t.Fatalf("another plugin while one is over its share: %+v, %v", d, err)
	}

	mu.Lock()
	now = now.Add(24 * time.Hour) // the debt is paid
	mu.Unlock()
	if d, err := spin.Authenticate(context.Background(), bytesReq(hdr("X-Iters", "0"))); err != nil || !d.Allow {
		t.Fatalf("after the debt is paid: %+v, %v", d, err)
	}
}

// At the default share a plugin under steady load is never refused: the
// share bounds spinning, not ordinary calls.
func TestDefaultCPUShareDoesNotRefuseOrdinaryCalls(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	p := load(t, e, "allow", hostabi.PluginOptions{})
	r := bytesReq(hdr("X-User", "alice"))
	for i := range 20000 {
		if _, err := p.Authenticate(context.Background(), r); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := p.Stats().OverShare; n != 0 {
		t.Fatalf("%d ordinary calls refused at the default share", n)
	}
}
