package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrInvalidKey is a plugin key/value call with an empty key or tenant.
var ErrInvalidKey = errors.New("store: invalid key")

// The plugin key/value store (hostabi.KVStore): one namespace per tenant,
// each entry a CRC-framed record (expiry ‖ value) under kv/<tenant>\x00<key>,
// and per tenant a count of its entries under kn/<tenant>, so the quota is
// checked without scanning. Each tenant's writes are serialised by its own
// lock (TenantLocks; one process owns a data directory); expired entries stay
// until the quota needs their room, as in the in-memory store the plugins
// had before.

// TenantLocks holds one write lock per tenant, for the plugin KV writes of
// both backends. One lock for every tenant made a tenant's plugin that
// writes without pause (a refused new key costs a scan of its namespace and
// a synced write) hold it nearly always, so another tenant's kv_set queued
// behind that tenant's writes and its plugin calls ran past their timeout
// (TestNoisyKVWritesDoNotStallAnotherTenant). On PostgreSQL the writers
// waiting for their tenant's advisory lock held a pooled connection each,
// so a noisy tenant could hold the whole pool: waiting here, before a
// connection is taken, bounds a tenant's KV writes to one connection a
// replica. A lock is a one-slot channel so that waiting for it honours the
// call's context. The map keeps a lock for every tenant that ever wrote:
// tenant names come from the configuration, not from requests. The zero
// value is ready to use.
type TenantLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// Lock takes tenant's write lock, or returns ctx's error if ctx ends first;
// on success the caller must call the returned unlock.
func (l *TenantLocks) Lock(ctx context.Context, tenant string) (unlock func(), err error) {
	l.mu.Lock()
	c := l.m[tenant]
	if c == nil {
		if l.m == nil {
			l.m = map[string]chan struct{}{}
		}
		c = make(chan struct{}, 1)
		l.m[tenant] = c
	}
	l.mu.Unlock()
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func kvKey(tenant string, key []byte) []byte {
	return append([]byte("kv/"+tenant+"\x00"), key...)
}

func kvCountKey(tenant string) []byte { return []byte("kn/" + tenant) }

func kvRecord(exp time.Time, val []byte) []byte {
	p := make([]byte, 8, 8+len(val))
	if !exp.IsZero() {
		binary.BigEndian.PutUint64(p, uint64(exp.UnixNano()))
	}
	return frame(append(p, val...))
}

// kvOpen checks a record and returns its value and whether it has expired
// at now.
func kvOpen(rec []byte, now time.Time) (val []byte, expired bool, err error) {
	p, err := unframe(rec)
	if err != nil || len(p) < 8 {
		return nil, false, fmt.Errorf("store: kv record: %w", ErrCorrupt)
	}
	exp := binary.BigEndian.Uint64(p[:8])
	return p[8:], exp != 0 && now.UnixNano() > int64(exp), nil
}

func kvCheck(ctx context.Context, tenant string, key []byte) error {
	if tenant == "" || len(key) == 0 {
		return ErrInvalidKey
	}
	return ctx.Err()
}

// KVGet returns a copy of key's value in tenant's namespace; found is false
// when it is absent or expired.
func (db *DB) KVGet(ctx context.Context, tenant string, key []byte) (val []byte, found bool, err error) {
	if err := kvCheck(ctx, tenant, key); err != nil {
		return nil, false, err
	}
	now := db.now()
	err = db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(kvKey(tenant, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(rec []byte) error {
			v, expired, err := kvOpen(rec, now)
			if err != nil || expired {
				return err
			}
			val, found = append([]byte{}, v...), true
			return nil
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: kv get: %w", err)
	}
	return val, found, nil
}

// KVSet stores val under key in tenant's namespace, expiring after ttl
// (zero: never). A new key when the tenant holds maxEntries unexpired
// entries is refused (stored false, nothing written); expired entries are
// purged first.
func (db *DB) KVSet(ctx context.Context, tenant string, key, val []byte, ttl time.Duration, maxEntries int) (stored bool, err error) {
	if err := kvCheck(ctx, tenant, key); err != nil {
		return false, err
	}
	now := db.now()
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	rec := kvRecord(exp, val)
	k := kvKey(tenant, key)
	unlock, err := db.kvLocks.Lock(ctx, tenant)
	if err != nil {
		return false, fmt.Errorf("store: kv set: %w", err)
	}
	defer unlock()
	err = db.update(func(txn *badger.Txn) error {
		stored = false
		if _, err := txn.Get(k); err == nil {
			stored = true
			return txn.Set(k, rec) // an existing key (even expired) takes no more room
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		n, err := db.kvCount(txn, tenant, now, false)
		if err != nil {
			return err
		}
		if n >= maxEntries {
			if n, err = db.kvCount(txn, tenant, now, true); err != nil || n >= maxEntries {
				return err // the purge (if any) commits; the new key does not
			}
		}
		if err := txn.Set(k, rec); err != nil {
			return err
		}
		stored = true
		return db.kvSetCount(txn, tenant, n+1)
	})
	if err != nil {
		return false, fmt.Errorf("store: kv set: %w", err)
	}
	return stored, nil
}

// KVDelete removes key from tenant's namespace; an absent key is not an error.
func (db *DB) KVDelete(ctx context.Context, tenant string, key []byte) error {
	if err := kvCheck(ctx, tenant, key); err != nil {
		return err
	}
	k := kvKey(tenant, key)
	unlock, err := db.kvLocks.Lock(ctx, tenant)
	if err != nil {
		return fmt.Errorf("store: kv delete: %w", err)
	}
	defer unlock()
	err = db.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if err := txn.Delete(k); err != nil {
			return err
		}
		n, err := db.kvCount(txn, tenant, db.now(), false)
		if err != nil {
			return err
		}
		return db.kvSetCount(txn, tenant, max(n-1, 0))
	})
	if err != nil {
		return fmt.Errorf("store: kv delete: %w", err)
	}
	return nil
}

// kvCount returns how many entries tenant holds. With purge, or when the
// stored count is missing or malformed, it scans them instead, deleting
// the expired ones when purge is set, and stores the count it found.
func (db *DB) kvCount(txn *badger.Txn, tenant string, now time.Time, purge bool) (int, error) {
	if !purge {
		n := -1 // missing or malformed: count by scanning
		it, err := txn.Get(kvCountKey(tenant))
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return 0, err
		}
		if err == nil {
			if err := it.Value(func(v []byte) error {
				if len(v) == 4 {
					n = int(binary.BigEndian.Uint32(v))
				}
				return nil
			}); err != nil {
				return 0, err
			}
		}
		if n >= 0 {
			return n, nil
		}
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = kvKey(tenant, nil)
	iter := txn.NewIterator(opts)
	var dead [][]byte
	n := 0
	for iter.Rewind(); iter.Valid(); iter.Next() {
		n++
		if !purge {
			continue
		}
		err := iter.Item().Value(func(rec []byte) error {
			_, expired, err := kvOpen(rec, now)
			if expired || errors.Is(err, ErrCorrupt) {
				dead = append(dead, iter.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			iter.Close()
			return 0, err
		}
	}
	iter.Close()
	for _, k := range dead {
		if err := txn.Delete(k); err != nil {
			return 0, err
		}
	}
	n -= len(dead)
	return n, db.kvSetCount(txn, tenant, n)
}

func (db *DB) kvSetCount(txn *badger.Txn, tenant string, n int) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return txn.Set(kvCountKey(tenant), b[:])
}

// exportKV calls fn with every unexpired plugin KV entry (RecKV). A record
// that fails its check stops the export: it cannot be moved as it is.
func (db *DB) exportKV(txn *badger.Txn, fn func(Record) error) error {
	now := db.now()
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte("kv/")
	iter := txn.NewIterator(opts)
	defer iter.Close()
	for iter.Rewind(); iter.Valid(); iter.Next() {
		rec, err := iter.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		p, err := unframe(rec)
		if err != nil || len(p) < 8 {
			return fmt.Errorf("store: kv record: %w", ErrCorrupt)
		}
		r := Record{Kind: RecKV, Key: string(iter.Item().Key()[len("kv/"):]), Value: p[8:]}
		if exp := binary.BigEndian.Uint64(p[:8]); exp != 0 {
			if now.UnixNano() > int64(exp) {
				continue
			}
			r.ExpiresAt = time.Unix(0, int64(exp))
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// importKV writes a RecKV record unless its key exists (even expired) or it
// has expired, and counts it in its tenant's entry count.
//
// The tenant's quota is not checked: the import takes every entry and the
// count may end above the quota. The entries were within the quota where
// they came from; the migrating tool does not know the quota the proxy will
// run with (it is the ABI's or the config's, not the store's); and refusing
// half-way would leave a tenant's plugin data split between two backends.
// A count above the quota behaves as after lowering the quota: new keys are
// refused until the plugin deletes entries or they expire, updates still work.
func (db *DB) importKV(r Record) (bool, error) {
	tenant, key, ok := strings.Cut(r.Key, "\x00")
	if !ok || tenant == "" || key == "" {
		return false, fmt.Errorf("store: kv import: %w", ErrInvalidKey)
	}
	now := db.now()
	if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
		return false, nil
	}
	k := kvKey(tenant, []byte(key))
	rec := kvRecord(r.ExpiresAt, r.Value)
	unlock, err := db.kvLocks.Lock(context.Background(), tenant)
	if err != nil {
		return false, err
	}
	defer unlock()
	wrote := false
	err = db.update(func(txn *badger.Txn) error {
		wrote = false
		if _, err := txn.Get(k); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		n, err := db.kvCount(txn, tenant, now, false)
		if err != nil {
			return err
		}
		if err := txn.Set(k, rec); err != nil {
			return err
		}
		wrote = true
		return db.kvSetCount(txn, tenant, n+1)
	})
	if err != nil {
		return false, fmt.Errorf("store: kv import: %w", err)
	}
	return wrote, nil
}
