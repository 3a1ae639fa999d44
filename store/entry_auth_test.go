package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// ReadEntry's verdicts, and the disposition a lease takes from them.
func TestQueueRecordAuth(t *testing.T) {
	kr := keyring(t, k1)
	other := keyring(t, k2)
	e := Entry{ID: "0000000000000001000000ab", Tenant: "a", Body: []byte(`{"webhook_code":"X"}`)}
	sealed, err := kr.SealEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := EncodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	var nokeys *Keyring
	for _, tc := range []struct {
		name string
		kr   *Keyring
		rec  []byte
		want Auth
		disp Disposition
	}{
		{"sealed, its keyring", kr, sealed, Authenticated, Deliver},
		{"sealed, no keyring", nokeys, sealed, UnknownKey, Hold},
		{"sealed, a keyring without its key", other, sealed, UnknownKey, Hold},
		{"framed, a keyring", kr, framed, Unauthenticated, DeadLetter},
		{"framed, no keyring", nokeys, framed, Unauthenticated, Deliver},
		{"MAC changed, its keyring", kr, tampered, Unauthenticated, DeadLetter},
	} {
		got, a, err := tc.kr.ReadEntry(e.ID, tc.rec)
		if err != nil || a != tc.want || got.ID != e.ID || !bytes.Equal(got.Body, e.Body) {
			t.Errorf("%s: ReadEntry = %+v, %v, %v; want auth %v", tc.name, got, a, err, tc.want)
		}
		if d := tc.kr.Disposition(a, EntryKeyID(tc.rec), noBadKeys); d != tc.disp {
			t.Errorf("%s: Disposition = %v, want %v", tc.name, d, tc.disp)
		}
	}
	// Keys that do not match the data: a MAC failing under a bad key may be
	// genuine (held); while the primary is bad everything is held, even
	// what a good key authenticated (a retry would authenticate it under
	// the wrong bytes).
	badK1 := func(id string) bool { return id == "k1" }
	if d := kr.Disposition(Unauthenticated, "k1", badK1); d != Hold {
		t.Errorf("Disposition(MAC fails under a bad key) = %v, want Hold", d)
	}
	if d := kr.Disposition(Authenticated, "k1", badK1); d != Hold {
		t.Errorf("Disposition(authenticated, primary bad) = %v, want Hold", d)
	}
	if d := other.Disposition(Authenticated, "k2", badK1); d != Deliver {
		t.Errorf("Disposition(authenticated, another key bad) = %v, want Deliver", d)
	}
	// Stored under another id: damaged, whatever the MAC.
	if _, _, err := kr.ReadEntry("0000000000000001000000ac", sealed); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadEntry under another id = %v, want ErrCorrupt", err)
	}
	// A replay: an unauthenticated record needs vouching; what cannot be
	// checked or authenticated rightly here is refused.
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, _, err := kr.ReplayRecord(e.ID, framed, false, now, noBadKeys); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("ReplayRecord(framed, not vouched) = %v, want ErrUnauthenticated", err)
	}
	if b, got, err := kr.ReplayRecord(e.ID, framed, true, now, noBadKeys); err != nil || EntryKeyID(b) != "k1" || !got.NextAt.Equal(now) || got.Attempts != 0 {
		t.Errorf("ReplayRecord(framed, vouched) = key %q, %+v, %v; want authenticated under k1, due now", EntryKeyID(b), got, err)
	}
	if _, _, err := other.ReplayRecord(e.ID, sealed, true, now, noBadKeys); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("ReplayRecord(under a key the keyring lacks) = %v, want ErrKeyMismatch", err)
	}
	if _, _, err := nokeys.ReplayRecord(e.ID, sealed, true, now, noBadKeys); !errors.Is(err, ErrNoKey) {
		t.Errorf("ReplayRecord(sealed, no keyring) = %v, want ErrNoKey", err)
	}
	if _, _, err := kr.ReplayRecord(e.ID, sealed, true, now, badK1); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("ReplayRecord(primary bad) = %v, want ErrKeyMismatch", err)
	}
	if b, _, err := nokeys.ReplayRecord(e.ID, framed, false, now, noBadKeys); err != nil || EntryKeyID(b) != "" {
		t.Errorf("ReplayRecord(framed, no keyring) = key %q, %v; want framed", EntryKeyID(b), err)
	}
}

// Queue records from the store are untrusted bytes: no reader of the
// envelope panics, and what OpenEntry accepts under a keyring is what that
// keyring sealed.
func FuzzQueueRecord(f *testing.F) {
	kr, err := NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		f.Fatal(err)
	}
	e := Entry{ID: "x", Tenant: "a", Body: []byte("b")}
	sealed, _ := kr.SealEntry(e)
	framed, _ := EncodeEntry(e)
	f.Add(sealed)
	f.Add(framed)
	f.Add([]byte{authVersion, 0})
	f.Add(append([]byte{authVersion, 40}, make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var nokeys *Keyring
		for _, k := range []*Keyring{nokeys, kr} {
			_, _, _ = k.ReadEntry("x", b)
			_, _, _ = k.ReadEntry("", b)
			_, _, _ = k.ReplayRecord("x", b, true, time.Time{}, noBadKeys)
		}
		_ = entryFrame(b)
		_ = EntryKeyID(b)
		got, err := kr.OpenEntry("x", b)
		if err != nil {
			return
		}
		again, err := kr.SealEntry(got)
		if err != nil {
			t.Fatal(err)
		}
		if _, a, err := kr.ReadEntry("x", again); err != nil || a != Authenticated {
			t.Fatalf("an accepted record does not round-trip: %v, %v", a, err)
		}
		if EntryKeyID(b) != "k1" {
			t.Fatalf("OpenEntry accepted a record not authenticated under k1: %q", b)
		}
	})
}

// noBadKeys is a badKey for a keyring that matches its data.
func noBadKeys(string) bool { return false }
