package hostabi

import (
	"context"
	"time"
)

// KVStore holds the plugins' key/value data (kv_get, kv_set, kv_delete):
// one namespace per tenant, shared by that tenant's plugins and by no one
// else. The store backends implement it (store.DB on Badger, pg.DB on
// PostgreSQL, where every replica sees the same data); without one, an
// Engine keeps the data in memory (NewMemoryKV). See ABI.md §4.4.
//
// The host checks keys and values against the ABI's limits before calling
// (abi.MaxKVKey, abi.MaxKVValue), so a store sees only non-empty keys.
// Implementations must be safe for concurrent use, must not retain key or
// val after returning, and must honour ctx (it is cancelled when the plugin
// call runs past its deadline). Any error is reported to the guest as
// abi.StatusUnavailable: the guest decides (ABI.md §4.4).
type KVStore interface {
	// KVGet returns key's value, which the caller only reads; found is
	// false when the key is absent or its TTL has passed.
	KVGet(ctx context.Context, tenant string, key []byte) (val []byte, found bool, err error)
	// KVSet stores val under key, expiring after ttl (zero: never). A key
	// that does not exist yet is refused, with stored false, a nil error and
	// nothing written, when the tenant already holds maxEntries keys that
	// have not expired. Expired keys may be purged on the way.
	KVSet(ctx context.Context, tenant string, key, val []byte, ttl time.Duration, maxEntries int) (stored bool, err error)
	// KVDelete removes key; an absent key is not an error.
	KVDelete(ctx context.Context, tenant string, key []byte) error
}
