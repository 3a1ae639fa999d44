//go:build !race

package store

import (
	"testing"
	"time"
)

// TestEncodeEntryAllocs: an entry's record is one allocation (issue 12:
// json.Marshal and the frame's copy cost a dozen and two copies).
func TestEncodeEntryAllocs(t *testing.T) {
	e := Entry{ID: "0000018c1a2b3c4d00000001", Tenant: "t1", Body: make([]byte, 600),
		Headers:    []Header{{"Plaid-Verification", "eyJhbGciOiJFUzI1NiJ9.e30.sig"}, {"Content-Type", "application/json"}},
		ReceivedAt: time.Now(), NextAt: time.Now()}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := EncodeEntry(e); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("EncodeEntry allocates %v times, want 1", n)
	}
}
