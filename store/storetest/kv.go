package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// KV is the plugin key/value store contract (hostabi.KVStore) that every
// backend implements besides Store.
type KV interface {
	KVGet(ctx context.Context, tenant string, key []byte) (val []byte, found bool, err error)
	KVSet(ctx context.Context, tenant string, key, val []byte, ttl time.Duration, maxEntries int) (stored bool, err error)
	KVDelete(ctx context.Context, tenant string, key []byte) error
}

// The ABI's limits (hostabi/abi: MaxKVKey, MaxKVValue, MaxKVEntries).
const (
	maxKVKey     = 128
	maxKVValue   = 4096
	maxKVEntries = 1024
)

func openKV(t *testing.T, open Opener, c *Clock) (Store, KV) {
	t.Helper()
	s := openWith(t, open, nil, c)
	kv, ok := s.(KV)
	if !ok {
		t.Fatalf("%T does not implement the plugin KV store", s)
	}
	return s, kv
}

func kvWant(t *testing.T, kv KV, tenant, key, want string) {
	t.Helper()
	v, found, err := kv.KVGet(t.Context(), tenant, []byte(key))
	must(t, err)
	switch {
	case want == "" && found:
		t.Fatalf("KVGet(%s, %q) = %q, want not found", tenant, key, v)
	case want != "" && (!found || string(v) != want):
		t.Fatalf("KVGet(%s, %q) = %q, %v, want %q", tenant, key, v, found, want)
	}
}

func kvSet(t *testing.T, kv KV, tenant, key, val string, ttl time.Duration, max int) bool {
	t.Helper()
	ok, err := kv.KVSet(t.Context(), tenant, []byte(key), []byte(val), ttl, max)
	must(t, err)
	return ok
}

// Issue 11.1: set, get, overwrite, delete, expiry; tenants apart.
func testKVBasics(t *testing.T, open Opener) {
	c := newClock()
	_, kv := openKV(t, open, c)
	kvWant(t, kv, "t1", "k", "")
	if !kvSet(t, kv, "t1", "k", "v1", 0, maxKVEntries) {
		t.Fatal("KVSet refused on an empty store")
	}
	kvWant(t, kv, "t1", "k", "v1")
	kvSet(t, kv, "t1", "k", "v2", 0, maxKVEntries)
	kvWant(t, kv, "t1", "k", "v2")
	kvWant(t, kv, "t2", "k", "") // tenants are apart
	kvSet(t, kv, "t2", "k", "other", 0, maxKVEntries)
	kvWant(t, kv, "t1", "k", "v2")
	must(t, kv.KVDelete(t.Context(), "t1", []byte("k")))
	kvWant(t, kv, "t1", "k", "")
	kvWant(t, kv, "t2", "k", "other")
	must(t, kv.KVDelete(t.Context(), "t1", []byte("never-set"))) // absent: not an error
	// "t1\x00k" must not reach into another tenant's namespace.
	kvWant(t, kv, "t", "1\x00k", "")

	kvSet(t, kv, "t1", "ttl", "soon gone", 10*time.Second, maxKVEntries)
	c.Add(5 * time.Second)
	kvWant(t, kv, "t1", "ttl", "soon gone")
	c.Add(6 * time.Second)
	kvWant(t, kv, "t1", "ttl", "")

	// Empty keys (and tenants) are refused, whatever the operation.
	if _, err := kv.KVSet(t.Context(), "t1", nil, []byte("v"), 0, maxKVEntries); err == nil {
		t.Fatal("KVSet(empty key) = nil error")
	}
	if _, _, err := kv.KVGet(t.Context(), "t1", nil); err == nil {
		t.Fatal("KVGet(empty key) = nil error")
	}
	if _, err := kv.KVSet(t.Context(), "", []byte("k"), []byte("v"), 0, maxKVEntries); err == nil {
		t.Fatal("KVSet(empty tenant) = nil error")
	}
	wantErr(t, "KVDelete(empty key)", kv.KVDelete(t.Context(), "t1", nil), store.ErrInvalidKey)
}

// Issue 11.1: the largest key and value the ABI allows (any bytes) round
// trip, and survive closing and reopening the store.
func testKVMaxSizeReopen(t *testing.T, open Opener) {
	c := newClock()
	s, kv := openKV(t, open, c)
	key := bytes.Repeat([]byte{0, 0xff, 'k'}, maxKVKey/3+1)[:maxKVKey]
	val := bytes.Repeat([]byte{0xff, 0, 'v', '\n'}, maxKVValue/4)
	ok, err := kv.KVSet(t.Context(), "t1", key, val, 0, maxKVEntries)
	must(t, err)
	if !ok {
		t.Fatal("KVSet(max sizes) refused")
	}
	kvSet(t, kv, "t1", "plain", "x", time.Hour, maxKVEntries)
	must(t, s.Close())
	_, kv = openKV(t, open, c)
	got, found, err := kv.KVGet(t.Context(), "t1", key)
	must(t, err)
	if !found || !bytes.Equal(got, val) {
		t.Fatalf("KVGet(max sizes) after reopen = %d bytes, %v; want %d bytes", len(got), found, len(val))
	}
	kvWant(t, kv, "t1", "plain", "x")
}

// Issue 11.1: the quota counts a tenant's unexpired keys; a new key beyond
// it is refused with nothing written, an existing key may still change,
// expired keys make room, and concurrent writers cannot overshoot it.
func testKVQuota(t *testing.T, open Opener) {
	c := newClock()
	_, kv := openKV(t, open, c)
	const max = 4
	for i := range max - 1 {
		if !kvSet(t, kv, "t1", fmt.Sprintf("k%d", i), "v", 0, max) {
			t.Fatalf("KVSet #%d refused under the quota", i)
		}
	}
	kvSet(t, kv, "t1", "short", "v", time.Second, max)
	if kvSet(t, kv, "t1", "over", "v", 0, max) {
		t.Fatal("KVSet beyond the quota stored")
	}
	kvWant(t, kv, "t1", "over", "") // no partial write
	if !kvSet(t, kv, "t1", "k0", "changed", 0, max) {
		t.Fatal("KVSet of an existing key refused at the quota")
	}
	kvWant(t, kv, "t1", "k0", "changed")
	if !kvSet(t, kv, "t2", "k0", "v", 0, max) {
		t.Fatal("another tenant refused by t1's quota")
	}
	must(t, kv.KVDelete(t.Context(), "t1", []byte("k1")))
	if !kvSet(t, kv, "t1", "after-delete", "v", 0, max) {
		t.Fatal("KVSet refused after a delete made room")
	}
	c.Add(2 * time.Second) // "short" expires
	if !kvSet(t, kv, "t1", "after-expiry", "v", 0, max) {
		t.Fatal("KVSet refused after an expiry made room")
	}
	if kvSet(t, kv, "t1", "over2", "v", 0, max) {
		t.Fatal("KVSet beyond the quota stored (after expiry)")
	}

	// 16 writers race for 8 free entries of t3: exactly 8 get one.
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored, errs := 0, []string{}
	for i := range 16 {
		wg.Go(func() {
			ok, err := kv.KVSet(context.Background(), "t3", fmt.Appendf(nil, "race-%02d", i), []byte("v"), 0, 8)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
			}
			if ok {
				stored++
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 || stored != 8 {
		t.Fatalf("concurrent KVSet: %d stored, errors %s; want 8 stored", stored, strings.Join(errs, "; "))
	}
}
