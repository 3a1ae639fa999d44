package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The client connections' read, idle and write timeouts are kept by a
// clock of our own, not by fasthttp. Given the timeouts, fasthttp moves the
// connection's deadlines three times a request (the idle wait, the head's
// read, the answer's write), each a clock read and a change to the
// runtime's timer heap: about 5% of a proxied request's CPU, measured
// (RATIONALE.md "How the client timeouts are kept"). The clock costs a map
// lookup and an atomic store at each change of phase instead, and one scan
// of the open connections a tick.
//
// Each connection is in one phase at a time, with its bound:
//
//	phRead   from the accept until the first request's head is read, or from
//	         a later request's first byte until its head is read; while a
//	         handler reads the body: ReadTimeout (as fasthttp had it, the
//	         first request's bound covers the wait for its first byte too)
//	phBusy   the handler runs, or a streamed answer waits for the upstream:
//	         no bound here (the upstream's own timeouts bound those waits)
//	phWrite  the answer, or the piece of a streamed one just read, is being
//	         written: WriteTimeout
//	phIdle   a kept-alive connection waits for its next request: IdleTimeout
//
// A bound is never cut short: the scan stamps a phase when it first sees
// it, after it began, and cuts when a later scan finds the same phase (the
// same change: each change counts) at least the bound after that stamp.
// So a connection is cut between its bound and its bound plus two ticks
// after the phase began; the tick is a twentieth of the shortest bound
// (between 5 and 500 ms). Cutting moves the connection's deadline to the
// past in the phase's direction: the blocked read or write fails at once
// and fasthttp closes the connection, as its own deadline did.
type phase uint64

const (
	phBusy phase = iota
	phRead
	phWrite
	phIdle
)

var phaseNames = [...]string{phBusy: "busy", phRead: "read", phWrite: "write", phIdle: "idle"}

// connRec is one connection's phase, set by the goroutine serving it and
// read by the scan.
type connRec struct {
	state atomic.Uint64 // phase | changes<<2: each change is seen, even back to the same phase

	// The scan's own (only its goroutine touches them).
	seen   uint64        // the state the scan stamped
	seenAt time.Duration // when it first saw it
	cut    bool          // cut in that state
}

// set enters phase p. A nil record (no clock: a RequestCtx a test built)
// does nothing.
func (r *connRec) set(p phase) {
	if r == nil {
		return
	}
	for {
		old := r.state.Load()
		if r.state.CompareAndSwap(old, (old>>2+1)<<2|uint64(p)) {
			return
		}
	}
}

func (r *connRec) phase() phase { return phase(r.state.Load() & 3) }

type connClock struct {
	conns    sync.Map // net.Conn → *connRec, from StateNew to StateClosed or StateHijacked
	bounds   [4]time.Duration
	tick     time.Duration
	timeouts [4]prometheus.Counter // safeclose_client_timeouts_total, by phase (none for phBusy)
	// cut moves c's deadline in p's direction to the past; tests replace it.
	cut func(c net.Conn, p phase)
}

func newConnClock(read, write, idle time.Duration, reg prometheus.Registerer) *connClock {
	k := &connClock{cut: cutConn}
	k.bounds[phRead], k.bounds[phWrite], k.bounds[phIdle] = read, write, idle
	shortest := time.Duration(0)
	for _, b := range k.bounds {
		if b > 0 && (shortest == 0 || b < shortest) {
			shortest = b
		}
	}
	k.tick = min(max(shortest/20, 5*time.Millisecond), 500*time.Millisecond)
	cuts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "safeclose_client_timeouts_total",
		Help: "Client connections closed for a timeout, by phase: read (ReadTimeout, a request's head or body), write (WriteTimeout, the answer), idle (IdleTimeout, between requests).",
	}, []string{"phase"})
	for _, p := range []phase{phRead, phWrite, phIdle} { // exported at zero before the first cut
		k.timeouts[p] = cuts.WithLabelValues(phaseNames[p])
	}
	if reg != nil {
		reg.MustRegister(cuts)
	}
	return k
}

// past is a deadline long gone: it fails a blocked read or write at once
// (the clock's cuts, a tunnel's end, the upstream's buffered-bytes check).
var past = time.Unix(1, 0)

func cutConn(c net.Conn, p phase) {
	if p == phWrite {
		_ = c.SetWriteDeadline(past)
		return
	}
	_ = c.SetReadDeadline(past)
}

// rec is c's record, nil if it has none.
func (k *connClock) rec(c net.Conn) *connRec {
	if c == nil {
		return nil
	}
	if v, ok := k.conns.Load(c); ok {
		return v.(*connRec)
	}
	return nil
}

// connState is the clock's part of fasthttp's ConnState hook.
func (k *connClock) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		r := new(connRec)
		r.state.Store(1<<2 | uint64(phRead))
		k.conns.Store(c, r)
	case fasthttp.StateActive: // a request's first byte arrived
		if r := k.rec(c); r != nil && r.phase() != phRead { // the first request's bound began at the accept
			r.set(phRead)
		}
	case fasthttp.StateIdle:
		k.rec(c).set(phIdle)
	case fasthttp.StateHijacked, fasthttp.StateClosed:
		k.conns.Delete(c)
	}
}

// run scans every tick until ctx ends.
func (k *connClock) run(ctx context.Context) {
	t := time.NewTicker(k.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.scan(monoNow())
		}
	}
}

// scan stamps the phases it sees first and cuts the connections whose
// phase has outlasted its bound since its stamp.
func (k *connClock) scan(now time.Duration) {
	k.conns.Range(func(c, v any) bool {
		r := v.(*connRec)
		s := r.state.Load()
		if s != r.seen {
			r.seen, r.seenAt, r.cut = s, now, false
			return true
		}
		p := phase(s & 3)
		if b := k.bounds[p]; b > 0 && !r.cut && now-r.seenAt >= b {
			r.cut = true
			k.timeouts[p].Inc()
			k.cut(c.(net.Conn), p)
		}
		return true
	})
}
