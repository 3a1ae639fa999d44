package store

import (
	"errors"
	"testing"
)

// Issue 9.16: /readyz probes the store (a write and a read) and the sealing
// key (seal and open), instead of only asking Badger whether it is open.
func TestProbes(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), keyring(t, k1))
	if err := db.ProbeStore(); err != nil {
		t.Errorf("ProbeStore() = %v, want nil", err)
	}
	if err := db.ProbeKey(); err != nil {
		t.Errorf("ProbeKey() = %v, want nil", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.ProbeStore(); !errors.Is(err, ErrClosed) {
		t.Errorf("ProbeStore() after Close = %v, want ErrClosed", err)
	}

	nokey := open(t, t.TempDir(), nil)
	defer nokey.Close()
	if err := nokey.ProbeKey(); !errors.Is(err, ErrNoKey) {
		t.Errorf("ProbeKey() without a keyring = %v, want ErrNoKey", err)
	}
	if err := nokey.ProbeStore(); err != nil {
		t.Errorf("ProbeStore() without a keyring = %v, want nil", err)
	}
}
