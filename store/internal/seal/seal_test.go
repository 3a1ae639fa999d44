package seal

import (
	"bytes"
	"errors"
	"testing"
)

func mustKey(t testing.TB, id string, b byte) *Key {
	t.Helper()
	k, err := NewKey(id, bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTripAndAAD(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "k1", 1)
	rec, err := k.Seal([]byte("access-sandbox-123"), []byte("a/t/u/i"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte("access-sandbox")) {
		t.Fatal("plaintext visible in record")
	}
	if id, _ := KeyID(rec); id != "k1" {
		t.Errorf("KeyID = %q, want k1", id)
	}
	pt, err := k.Open(rec, []byte("a/t/u/i"))
	if err != nil || string(pt) != "access-sandbox-123" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	tests := []struct {
		name string
		key  *Key
		rec  []byte
		aad  string
	}{
		{"other aad (another user)", k, rec, "a/t/u2/i"},
		{"other key same id", mustKey(t, "k1", 2), rec, "a/t/u/i"},
		{"other key id", mustKey(t, "k2", 1), rec, "a/t/u/i"},
		{"flipped byte", k, flip(rec, len(rec)-1), "a/t/u/i"},
		{"truncated", k, rec[:10], "a/t/u/i"},
		{"bad version", k, append([]byte{9}, rec[1:]...), "a/t/u/i"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.key.Open(tt.rec, []byte(tt.aad)); !errors.Is(err, ErrOpen) && !errors.Is(err, ErrMalformed) {
				t.Errorf("Open = %v, want ErrOpen or ErrMalformed", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestNewKeyRejectsBadSizes(t *testing.T) {
	t.Parallel()
	if _, err := NewKey("k", make([]byte, 16)); !errors.Is(err, ErrKeySize) {
		t.Errorf("16-byte key: %v", err)
	}
	if _, err := NewKey("", make([]byte, 32)); err == nil {
		t.Errorf("empty id accepted")
	}
}

func FuzzOpen(f *testing.F) {
	k := mustKey(f, "k1", 7)
	good, _ := k.Seal([]byte("secret"), []byte("aad"))
	f.Add(good, []byte("aad"))
	f.Add([]byte{1, 2, 'k', '1'}, []byte(""))
	f.Fuzz(func(t *testing.T, rec, aad []byte) {
		pt, err := k.Open(rec, aad)
		if err != nil {
			return
		}
		// Anything that opens must be exactly what we sealed, with its aad.
		if !bytes.Equal(pt, []byte("secret")) || !bytes.Equal(aad, []byte("aad")) {
			t.Fatalf("forgery opened: %q aad %q", pt, aad)
		}
	})
}
