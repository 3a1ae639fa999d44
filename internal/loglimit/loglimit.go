// Package loglimit is the one rate limiter for log lines that untrusted or
// failing code can trigger at request rate (plugin log calls, plugin
// failures): a token bucket that also counts what it dropped, so the next
// line that passes can say how many were suppressed. It imports only the
// standard library.
package loglimit

import (
	"sync"
	"time"
)

// Limiter is a token bucket. The zero value lets one line a second through
// with no burst. It is safe for concurrent use and must not be copied after
// first use.
type Limiter struct {
	// Rate is lines per second; zero means 1.
	Rate float64
	// Burst is how many lines may pass at once after a quiet spell; zero
	// means 1.
	Burst float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped uint64
}

// Allow reports whether a line may be logged at now. When it may, dropped is
// the number of lines refused since the last one that passed.
func (l *Limiter) Allow(now time.Time) (dropped uint64, ok bool) {
	rate, burst := l.Rate, l.Burst
	if rate <= 0 {
		rate = 1
	}
	if burst < 1 {
		burst = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = burst
	} else if now.After(l.last) {
		l.tokens = min(burst, l.tokens+now.Sub(l.last).Seconds()*rate)
	}
	if now.After(l.last) {
		l.last = now
	}
	if l.tokens < 1 {
		l.dropped++
		return 0, false
	}
	l.tokens--
	d := l.dropped
	l.dropped = 0
	return d, true
}
