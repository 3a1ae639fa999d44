package loglimit

import (
	"testing"
	"time"
)

// Issue 10.3: one limiter for both log floods (plugin log lines, plugin
// failures). The zero value passes one line a second and reports what it
// suppressed.
func TestZeroValueOneLineASecond(t *testing.T) {
	t.Parallel()
	var l Limiter
	t0 := time.Unix(1_800_000_000, 0)
	passed := 0
	for i := range 100 {
		if _, ok := l.Allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d lines passed in one second, want 1", passed)
	}
	n, ok := l.Allow(t0.Add(time.Second))
	if !ok || n != 99 {
		t.Errorf("next second: Allow = %d, %v; want 99 suppressed, true", n, ok)
	}
}

// A burst passes at once; then lines pass at Rate.
func TestBurstThenRate(t *testing.T) {
	t.Parallel()
	l := Limiter{Rate: 20, Burst: 50}
	t0 := time.Unix(1_800_000_000, 0)
	passed := 0
	for range 200 {
		if _, ok := l.Allow(t0); ok {
			passed++
		}
	}
	if passed != 50 {
		t.Fatalf("%d lines passed at once, want the burst of 50", passed)
	}
	passed = 0
	for i := range 100 { // one second in 10 ms steps: 20 more tokens
		if _, ok := l.Allow(t0.Add(time.Duration(i+1) * 10 * time.Millisecond)); ok {
			passed++
		}
	}
	if passed != 20 {
		t.Errorf("%d lines passed in the next second, want 20", passed)
	}
	// A clock that steps back never mints tokens.
	if _, ok := l.Allow(t0); ok {
		t.Errorf("Allow(earlier time) = ok with an empty bucket")
	}
}
