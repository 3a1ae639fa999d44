package hostabi

import (
	"math"
	"testing"
)

// The default shares of plugins loaded together leave a core to the rest
// of the process; one plugin alone keeps the single-plugin default.
func TestShareAmong(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cores, n int
		want     float64
	}{
		{1, 1, 0.5},  // one core: half of it for guests
		{1, 3, 0.17}, // a third of that half each
		{1, 10, 0.1}, // the floor
		{2, 1, 1},    // as DefaultCPUShare
		{2, 2, 0.5},  // two spinning plugins leave one core
		{2, 3, 0.33},
		{2, 40, 0.1}, // the floor
		{8, 1, 4},    // DefaultCPUShare: half the cores
		{8, 2, 3.5},  // seven cores between two
		{8, 10, 0.7},
		{16, 0, 8}, // n < 1 counts as one
	} {
		got := shareAmong(tt.cores, tt.n)
		if math.Abs(got-tt.want) > 0.005 {
			t.Errorf("shareAmong(%d cores, %d plugins) = %.3f, want %.2f", tt.cores, tt.n, got, tt.want)
		}
		if tt.n >= 1 && got > MinDefaultCPUShare && float64(tt.n)*got > max(float64(tt.cores)-1, 0.5)+1e-9 {
			t.Errorf("shareAmong(%d, %d): %d plugins may hold %.2f cores, more than all but one", tt.cores, tt.n, tt.n, float64(tt.n)*got)
		}
	}
}
