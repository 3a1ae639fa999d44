package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/safeclose/safeclose/store/internal/seal"
)

// Rotate re-seals every item's token and re-authenticates every item record,
// owner index entry and queue record (queued or dead) not already under the
// primary key, in batches; it returns how many items it rewrote. Afterwards keys other than the primary
// can be removed from the keyring.
func (db *DB) Rotate() (int, error) {
	if db.keyErr != nil {
		return 0, db.keyErr
	}
	var keys [][]byte
	err := db.view(func(txn *badger.Txn) error {
		for _, prefix := range []string{"i/", "x/", "q/", "d/"} {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = []byte(prefix)
			iter := txn.NewIterator(opts)
			for iter.Rewind(); iter.Valid(); iter.Next() {
				keys = append(keys, iter.Item().KeyCopy(nil))
			}
			iter.Close()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for start := 0; start < len(keys); start += 100 {
		batch := keys[start:min(start+100, len(keys))]
		var done int
		err := db.update(func(txn *badger.Txn) (err error) {
			done = 0
			for _, k := range batch {
				var changed bool
				switch k[0] {
				case 'x':
					_, err = db.rotateOwner(txn, k)
				case 'q', 'd':
					err = db.rotateEntry(txn, k)
				default:
					changed, err = db.rotateItem(txn, k)
					if changed {
						done++
					}
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += done
	}
	// Only the primary seals and authenticates records now.
	err = db.update(func(txn *badger.Txn) error {
		for id := range db.kr.keys {
			if id != db.kr.primary.ID {
				if err := txn.Delete([]byte("ku/" + id)); err != nil {
					return err
				}
			}
		}
		return txn.Set([]byte("ku/"+db.kr.primary.ID), nil)
	})
	return n, err
}

func (db *DB) rotateItem(txn *badger.Txn, k []byte) (bool, error) {
	t, item, _ := strings.Cut(string(k[2:]), "\x00")
	rec, macID, err := db.getItem(txn, t, item)
	if err != nil {
		return false, fmt.Errorf("store: rotate: %w", err)
	}
	id, err := seal.KeyID(rec.Sealed)
	if err != nil {
		return false, fmt.Errorf("store: rotate %s: %w", item, err)
	}
	primary := db.kr.primary.ID
	if id == primary && macID == primary {
		return false, nil
	}
	if id != primary {
		old := db.kr.keys[id]
		if old == nil {
			return false, fmt.Errorf("%w: item %s is sealed with key %q", ErrKeyMismatch, item, id)
		}
		aad := tokenAAD(rec.Tenant, rec.User, rec.ItemID)
		pt, err := old.Open(rec.Sealed, aad)
		if err != nil {
			return false, fmt.Errorf("%w: item %s: %w", ErrKeyMismatch, item, err)
		}
		if rec.Sealed, err = db.kr.primary.Seal(pt, aad); err != nil {
			return false, err
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	return true, txn.Set(k, db.kr.authenticate(k, b))
}

// rotateEntry authenticates a queue record under the primary key if
// another keyring key authenticated it. One no key authenticated stays as
// it is: rotating must not vouch for it (entry_auth.go), and it becomes a
// dead letter when leased.
func (db *DB) rotateEntry(txn *badger.Txn, k []byte) error {
	it, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil // completed since the keys were listed
	}
	if err != nil {
		return err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return err
	}
	if id := EntryKeyID(v); id == "" || id == db.kr.primary.ID {
		return nil
	}
	e, err := db.kr.OpenEntry(string(k[2:]), v)
	if err != nil {
		return nil
	}
	b, err := db.kr.SealEntry(e)
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}

func (db *DB) rotateOwner(txn *badger.Txn, k []byte) (bool, error) {
	it, err := txn.Get(k)
	if err != nil {
		return false, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return false, err
	}
	p, macID, err := db.openRecord(k, v)
	if err != nil {
		return false, fmt.Errorf("store: rotate: %w", db.corrupt(err, "owner index", "", string(k[2:])))
	}
	if macID == db.kr.primary.ID {
		return false, nil
	}
	return true, txn.Set(k, db.kr.authenticate(k, p))
}
