package hostabi

import (
	"sync"
	"sync/atomic"
	"time"
)

// Penalty box defaults (PluginOptions.PenaltyAfter, PenaltyBackoff,
// PenaltyMaxBackoff). See RATIONALE.md "Why a penalty box".
const (
	DefaultPenaltyAfter      = 5
	DefaultPenaltyBackoff    = time.Second
	DefaultPenaltyMaxBackoff = 30 * time.Second
)

const (
	boxClosed   int32 = iota // calls run
	boxOpen                  // calls fail fast with ErrPenalty until the window ends
	boxHalfOpen              // one probe call is running; the others fail fast
)

// penaltyBox is a per-plugin circuit breaker. After `after` consecutive
// guest failures (trap, timeout, invalid result) it opens: calls fail fast
// with ErrPenalty without running the guest, so a broken plugin stops
// burning CPU (and instances) that other tenants share. When the window
// ends one probe call goes through (half-open); its success closes the box,
// its failure reopens it with the window doubled, up to max. Each Plugin has
// its own box; nothing is shared between plugins or tenants.
type penaltyBox struct {
	after     int32
	base, max time.Duration
	now       func() time.Time

	state atomic.Int32
	fails atomic.Int32 // consecutive failures while closed

	mu      sync.Mutex
	backoff time.Duration // current window
	until   time.Time     // end of the open window

	opens, rejected atomic.Uint64
}

func newPenaltyBox(after int, base, maxBackoff time.Duration, now func() time.Time) *penaltyBox {
	return &penaltyBox{after: int32(after), base: base, max: max(maxBackoff, base), now: now}
}

// admit reports whether a call may run the guest, and whether it is the
// half-open probe (which must end with done, success or failure, or with
// abandon). A rejected call is counted.
func (b *penaltyBox) admit() (probe, ok bool) {
	if b.state.Load() == boxClosed {
		return false, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case boxClosed:
		return false, true
	case boxOpen:
		if b.now().Before(b.until) {
			break
		}
		b.state.Store(boxHalfOpen)
		return true, true
	}
	b.rejected.Add(1)
	return false, false
}

// stillClosed is the second look a non-probe call takes once it holds an
// instance: calls that queued for an instance while the box opened must not
// run the guest either.
func (b *penaltyBox) stillClosed() bool {
	if b.state.Load() == boxClosed {
		return true
	}
	b.rejected.Add(1)
	return false
}

// done records a call's outcome. failed means the guest failed (trap,
// timeout, invalid result); other errors (busy, closed) go to abandon. It
// returns boxOpen when this outcome opened (or reopened) the box, boxClosed
// when it closed it (a good probe), and -1 when the state did not change.
func (b *penaltyBox) done(probe, failed bool) (changed int32) {
	if !failed {
		if probe {
			b.mu.Lock()
			b.backoff = 0
			b.fails.Store(0)
			b.state.Store(boxClosed)
			b.mu.Unlock()
			return boxClosed
		} else if b.fails.Load() != 0 && b.state.Load() == boxClosed {
			b.fails.Store(0)
		}
		return -1
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe:
		b.open(min(2*b.backoff, b.max))
		return boxOpen
	case b.state.Load() == boxClosed:
		if b.fails.Add(1) >= b.after {
			b.open(b.base)
			return boxOpen
		}
	}
	// A straggler admitted before the box opened changes nothing.
	return -1
}

// window returns the current open window.
func (b *penaltyBox) window() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.backoff
}

// abandon ends a probe that never reached the guest (no instance free, the
// plugin closing): the box stays open and the next call probes again.
func (b *penaltyBox) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.state.Store(boxOpen)
	b.mu.Unlock()
}

// open must be called with mu held.
func (b *penaltyBox) open(window time.Duration) {
	b.backoff = window
	b.until = b.now().Add(window)
	b.fails.Store(0)
	b.state.Store(boxOpen)
	b.opens.Add(1)
}

// inBox reports whether the box is open or half-open.
func (b *penaltyBox) inBox() bool { return b.state.Load() != boxClosed }
