package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Issue 11.1: the per-tenant count the KV quota reads is rebuilt from the
// entries when it is missing or malformed (a record moved in by hand or by
// a future import), so the quota never undercounts.
func TestKVCountRebuilt(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	for _, k := range []string{"a", "b", "c"} {
		if ok, err := db.KVSet(t.Context(), "t1", []byte(k), []byte("v"), 0, 3); err != nil || !ok {
			t.Fatalf("KVSet(%s) = %v, %v", k, ok, err)
		}
	}
	for _, damage := range []func(*badger.Txn) error{
		func(txn *badger.Txn) error { return txn.Delete(kvCountKey("t1")) },
		func(txn *badger.Txn) error { return txn.Set(kvCountKey("t1"), []byte{1}) },
	} {
		if err := db.bdb.Update(damage); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.KVSet(t.Context(), "t1", []byte("d"), []byte("v"), 0, 3); err != nil || ok {
			t.Fatalf("KVSet beyond the quota with a damaged count = %v, %v; want refused", ok, err)
		}
	}
}

// One tenant's KV writes do not wait for another's: each tenant has its own
// write lock, and waiting for it ends with the caller's context (a plugin
// call past its deadline). Before, one lock served every tenant
// (proxy.TestNoisyKVWritesDoNotStallAnotherTenant).
func TestKVWriteLockIsPerTenant(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	unlock, err := db.kvLocks.Lock(t.Context(), "noisy")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if ok, err := db.KVSet(t.Context(), "quiet", []byte("k"), []byte("v"), 0, 3); err != nil || !ok {
		t.Fatalf("KVSet(quiet) while noisy writes = %v, %v; want stored", ok, err)
	}
	if err := db.KVDelete(t.Context(), "quiet", []byte("k")); err != nil {
		t.Fatalf("KVDelete(quiet) while noisy writes = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if ok, err := db.KVSet(ctx, "noisy", []byte("k"), []byte("v"), 0, 3); !errors.Is(err, context.DeadlineExceeded) || ok {
		t.Fatalf("KVSet(noisy) past its deadline behind the lock = %v, %v; want %v", ok, err, context.DeadlineExceeded)
	}
}
