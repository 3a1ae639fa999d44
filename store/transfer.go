package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Record is one stored record as `safeclose migrate` moves it between
// backends: its kind, its key and its bytes exactly as stored (tokens still
// sealed, item and owner records still authenticated over the same record
// key, the rest framed), so no key is needed to move data and nothing is
// decrypted on the way.
type Record struct {
	Kind      string    // RecItem, RecOwner, …
	Key       string    // item: tenant "\x00" item id; orphan: tenant "\x00" key; otherwise the id
	Value     []byte    // the stored bytes
	ExpiresAt time.Time // link sessions: when the record expires; zero otherwise
}

// Record kinds.
const (
	RecItem    = "item"     // Key: tenant \x00 item id
	RecOwner   = "owner"    // Key: item id
	RecCanary  = "key"      // Key: key id; Value: the canary sealed by that key
	RecKeyUsed = "key_used" // Key: key id that authenticates stored records
	RecLink    = "link"     // Key: link token hash
	RecIntent  = "intent"   // Key: intent id
	RecOrphan  = "orphan"   // Key: tenant \x00 item id or "intent:"+id
	RecQueue   = "queue"    // Key: entry id; Value: EncodeEntry
	RecDead    = "dead"     // Key: entry id; Value: EncodeEntry
	RecKV      = "kv"       // Key: tenant \x00 plugin key; Value: the value; ExpiresAt: its expiry, zero for none
)

// MigrateMark is the key id of the RecKeyUsed record `safeclose migrate`
// imports into its destination before any other record and removes with
// Unmark once every record is in. Until then a store opened there reports
// ErrKeyMismatch naming this id (tokens refused, /readyz not ready), so a
// copy cut short is not served as if it were the whole store.
const MigrateMark = "safeclose-migrate-unfinished"

// Marked reports whether the store holds the MigrateMark record.
func (db *DB) Marked() (bool, error) {
	found := false
	err := db.view(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("ku/" + MigrateMark))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// Unmark removes the MigrateMark record.
func (db *DB) Unmark() error {
	return db.update(func(txn *badger.Txn) error { return txn.Delete([]byte("ku/" + MigrateMark)) })
}

// errHolds stops the Export that Holds runs at the first record.
var errHolds = errors.New("store: holds a record")

// Holds reports whether the store holds data Export would move: any record
// but the keys' (canaries and key-in-use marks, which a serve writes at
// start and a copy never brings back in an old form). It reads no further
// than the first.
func (db *DB) Holds() (bool, error) {
	err := db.Export(func(r Record) error {
		if r.Kind == RecCanary || r.Kind == RecKeyUsed {
			return nil
		}
		return errHolds
	})
	if errors.Is(err, errHolds) {
		return true, nil
	}
	return false, err
}

var exportPrefixes = []struct{ prefix, kind string }{
	{"kc/", RecCanary}, {"ku/", RecKeyUsed}, {"i/", RecItem}, {"x/", RecOwner}, {"lk/", RecLink},
	{"ei/", RecIntent}, {"o/", RecOrphan}, {"q/", RecQueue}, {"d/", RecDead},
}

// Export calls fn with every record that defines the store's state, in
// one read transaction. Indexes (user, link user) and the per-tenant KV
// counts are derived, not exported; expired KV entries are left behind.
func (db *DB) Export(fn func(Record) error) error {
	return db.view(func(txn *badger.Txn) error {
		for _, p := range exportPrefixes {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte(p.prefix)
			iter := txn.NewIterator(opts)
			for iter.Rewind(); iter.Valid(); iter.Next() {
				it := iter.Item()
				v, err := it.ValueCopy(nil)
				if err != nil {
					iter.Close()
					return err
				}
				r := Record{Kind: p.kind, Key: string(it.Key()[len(p.prefix):]), Value: v}
				if e := it.ExpiresAt(); e > 0 {
					r.ExpiresAt = time.Unix(int64(e), 0)
				}
				if err := fn(r); err != nil {
					iter.Close()
					return err
				}
			}
			iter.Close()
		}
		return db.exportKV(txn, fn)
	})
}

// Import writes r unless a record with its kind and key exists; it reports
// whether it wrote. Derived indexes are written with it.
func (db *DB) Import(r Record) (bool, error) {
	if r.Kind == RecKV {
		return db.importKV(r)
	}
	var prefix string
	for _, p := range exportPrefixes {
		if p.kind == r.Kind {
			prefix = p.prefix
		}
	}
	if prefix == "" {
		return false, nil
	}
	k := []byte(prefix + r.Key)
	wrote := false
	err := db.update(func(txn *badger.Txn) error {
		wrote = false
		if _, err := txn.Get(k); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		e := badger.NewEntry(k, r.Value)
		if !r.ExpiresAt.IsZero() {
			ttl := time.Until(r.ExpiresAt)
			if ttl <= 0 {
				return nil
			}
			e = e.WithTTL(ttl)
		}
		if err := txn.SetEntry(e); err != nil {
			return err
		}
		wrote = true
		switch r.Kind {
		case RecItem:
			var it Item
			if err := json.Unmarshal(AuthenticatedPayload(r.Value), &it); err != nil {
				return err
			}
			return txn.Set(userKey(it.Tenant, it.User, it.ItemID), nil)
		case RecLink:
			var ls LinkSession
			if err := unmarshalFramed(r.Value, &ls); err != nil {
				return err
			}
			uk := linkUserKey(ls, r.Key)
			return txn.SetEntry(badger.NewEntry(uk, []byte(r.Key)).WithTTL(max(time.Until(r.ExpiresAt), time.Minute)))
		}
		return nil
	})
	return wrote, err
}

// AuthenticatedPayload is the payload of an authenticated record, unchecked
// (for indexes while moving records; reads check the MAC).
func AuthenticatedPayload(rec []byte) []byte {
	id, ok := recordKeyID(rec)
	if !ok {
		return nil
	}
	return bytes.Clone(rec[2+len(id) : len(rec)-macSize])
}

// linkUserKey is the user index key of a link session (as SaveLinkSession writes it).
func linkUserKey(ls LinkSession, hash string) []byte {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ls.CreatedAt.UnixNano()))
	return append(append(linkUserPrefix(ls.Tenant, ls.User), hex.EncodeToString(ts[:])...), hash...)
}
