package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// Transfer is what `safeclose migrate` calls on both sides: every backend
// exports its records and imports another backend's.
type Transfer interface {
	Export(fn func(store.Record) error) error
	Import(r store.Record) (bool, error)
}

func openTransfer(t *testing.T, open Opener, c *Clock) (Transfer, KV) {
	t.Helper()
	s, kv := openKV(t, open, c)
	tr, ok := s.(Transfer)
	if !ok {
		t.Fatalf("%T does not implement Export and Import", s)
	}
	return tr, kv
}

func exportKV(t *testing.T, tr Transfer) map[string]store.Record {
	t.Helper()
	got := map[string]store.Record{}
	must(t, tr.Export(func(r store.Record) error {
		if r.Kind == store.RecKV {
			got[r.Key] = r
		}
		return nil
	}))
	return got
}

// Issue 11.6: plugin KV entries move between stores as RecKV records:
// unexpired entries only, expiry kept, an existing key left as is, a second
// import writes nothing, and the destination's quota counts them (an import
// is not refused by the quota: the count may end above it).
func testKVTransfer(t *testing.T, open, openDst Opener) {
	c := newClock()
	src, skv := openTransfer(t, open, c)
	bin := []byte{0, 0xff, 'k', 0}
	kvSet(t, skv, "t1", "k1", "v1", 0, maxKVEntries)
	kvSet(t, skv, "t1", "k2", "v2", time.Hour, maxKVEntries)
	kvSet(t, skv, "t2", "k1", "w1", 0, maxKVEntries)
	kvSet(t, skv, "t2", "clash", "from src", 0, maxKVEntries)
	ok, err := skv.KVSet(t.Context(), "t2", bin, []byte{0, 1, 2}, 0, maxKVEntries)
	must(t, err)
	if !ok {
		t.Fatal("KVSet(binary key) refused")
	}
	kvSet(t, skv, "t2", "gone", "x", time.Minute, maxKVEntries)
	c.Add(2 * time.Minute) // "gone" expires

	recs := exportKV(t, src)
	if len(recs) != 5 {
		t.Fatalf("Export: %d KV records, want 5 (the expired one left behind): %v", len(recs), recs)
	}
	if _, ok := recs["t2\x00gone"]; ok {
		t.Fatal("Export exported an expired KV entry")
	}
	if r := recs["t1\x00k1"]; string(r.Value) != "v1" || !r.ExpiresAt.IsZero() {
		t.Fatalf("Export t1/k1 = %q, expires %v; want \"v1\", no expiry", r.Value, r.ExpiresAt)
	}
	want := c.Now().Add(time.Hour - 2*time.Minute)
	if r := recs["t1\x00k2"]; string(r.Value) != "v2" || r.ExpiresAt.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("Export t1/k2 = %q, expires %v; want \"v2\", expires %v", r.Value, r.ExpiresAt, want)
	}
	if r := recs["t2\x00"+string(bin)]; !bytes.Equal(r.Value, []byte{0, 1, 2}) {
		t.Fatalf("Export t2/binary key = %v, want [0 1 2]", r.Value)
	}

	dst, dkv := openTransfer(t, openDst, c)
	kvSet(t, dkv, "t2", "clash", "already here", 0, maxKVEntries)
	for pass := range 2 {
		for k, r := range recs {
			wrote, err := dst.Import(r)
			must(t, err)
			if want := pass == 0 && k != "t2\x00clash"; wrote != want {
				t.Fatalf("Import(%q) pass %d = %v, want %v", k, pass, wrote, want)
			}
		}
	}
	expired := store.Record{Kind: store.RecKV, Key: "t1\x00old", Value: []byte("x"), ExpiresAt: c.Now().Add(-time.Second)}
	if wrote, err := dst.Import(expired); err != nil || wrote {
		t.Fatalf("Import(expired) = %v, %v; want false, nil", wrote, err)
	}
	if _, err := dst.Import(store.Record{Kind: store.RecKV, Key: "no separator", Value: []byte("x")}); err == nil {
		t.Fatal("Import(KV key without a tenant) = nil error")
	}
	kvWant(t, dkv, "t1", "k1", "v1")
	kvWant(t, dkv, "t1", "k2", "v2")
	kvWant(t, dkv, "t1", "old", "")
	kvWant(t, dkv, "t2", "k1", "w1")
	kvWant(t, dkv, "t2", "clash", "already here")
	kvWant(t, dkv, "t2", "gone", "")
	got, found, err := dkv.KVGet(t.Context(), "t2", bin)
	must(t, err)
	if !found || !bytes.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("KVGet(t2, binary key) after import = %v, %v", got, found)
	}

	// The quota counts what came in: t1 holds 2 entries.
	if kvSet(t, dkv, "t1", "k3", "v3", 0, 2) {
		t.Fatal("KVSet(t1, new key, max 2) after import stored, want refused")
	}
	if !kvSet(t, dkv, "t1", "k3", "v3", 0, 3) {
		t.Fatal("KVSet(t1, new key, max 3) after import refused")
	}
	// An import is not refused by the quota: t1 now holds 4, over a quota of 3.
	if wrote, err := dst.Import(store.Record{Kind: store.RecKV, Key: "t1\x00k4", Value: []byte("v4")}); err != nil || !wrote {
		t.Fatalf("Import(t1/k4) over the quota = %v, %v; want true, nil", wrote, err)
	}
	if kvSet(t, dkv, "t1", "k5", "v5", 0, 4) {
		t.Fatal("KVSet(t1, new key, max 4) with 4 entries stored, want refused")
	}
	c.Add(time.Hour) // k2 expires where it was imported too
	kvWant(t, dkv, "t1", "k2", "")
	kvWant(t, dkv, "t1", "k1", "v1")
}
