package proxy

import (
	"testing"
	"time"
)

func TestLogThrottleOneLineASecond(t *testing.T) {
	var l logThrottle
	t0 := time.Unix(1_800_000_000, 0)
	passed := 0
	for i := range 100 {
		if _, ok := l.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d lines passed in one second, want 1", passed)
	}
	n, ok := l.allow(t0.Add(time.Second))
	if !ok || n != 99 {
		t.Errorf("next second: allow = %d, %v; want 99 suppressed, true", n, ok)
	}
}
