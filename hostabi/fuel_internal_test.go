package hostabi

import (
	"testing"
	"time"
)

// Issue 12.1: calibration measures a plausible rate (between 10 million and
// 100 billion units a second: a unit is one fuel check, a few machine
// instructions) and the per-call budget it gives is positive.
func TestCalibrate(t *testing.T) {
	rate, err := calibrate()
	if err != nil {
		t.Fatal(err)
	}
	if rate < 1e7 || rate > 1e11 {
		t.Errorf("calibrate() = %.3g units/s, want 1e7..1e11", rate)
	}
	if b := budget(rate, 100*time.Millisecond); b <= 0 {
		t.Errorf("budget(%.3g, 100ms) = %d, want > 0", rate, b)
	}
	t.Logf("%.3g fuel units/s; 100ms budget %d", rate, budget(rate, 100*time.Millisecond))
}
