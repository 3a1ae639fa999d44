//go:build !race

package webhook

import "testing"

// Issue 12: one verified webhook cost 115 allocations through jwx's generic
// parse; the direct split and the pooled p256fixed verification keep it to
// about 32 (the signature's big.Int inverse, the JSON claims).
func TestVerifyAllocs(t *testing.T) {
	run := verifyOnce(t)
	run() // warm the key cache
	if n := testing.AllocsPerRun(50, run); n > 36 {
		t.Errorf("Verify allocates %v times per webhook, want at most 36", n)
	}
}
