//go:build !race

package webhook

import "testing"

// Issue 12: one verified webhook cost 115 allocations through jwx's generic
// parse; the direct split keeps it to a few dozen (most are inside
// crypto/ecdsa's big.Int path, which jwx's ES256 verifier uses).
func TestVerifyAllocs(t *testing.T) {
	run := verifyOnce(t)
	run() // warm the key cache
	if n := testing.AllocsPerRun(50, run); n > 48 {
		t.Errorf("Verify allocates %v times per webhook, want at most 48", n)
	}
}
