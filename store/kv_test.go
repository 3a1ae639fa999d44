package store

import (
	"testing"

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
