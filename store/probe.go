package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// probeKey is the one record ProbeStore writes; nothing else reads it.
var probeKey = []byte("probe/readyz")

// ProbeStore writes a random value to a probe record in a synced
// transaction and reads it back: nil means the store can take writes now
// (a full or read-only disk fails here). It is what /readyz calls.
func (db *DB) ProbeStore() error {
	var v [16]byte
	if _, err := rand.Read(v[:]); err != nil {
		return fmt.Errorf("store: probe: %w", err)
	}
	if err := db.update(func(txn *badger.Txn) error { return txn.Set(probeKey, v[:]) }); err != nil {
		return fmt.Errorf("store: probe write: %w", err)
	}
	var got []byte
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get(probeKey)
		if err != nil {
			return err
		}
		got, err = it.ValueCopy(nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: probe read: %w", err)
	}
	if !bytes.Equal(got, v[:]) {
		return errors.New("store: probe read back a different value")
	}
	return nil
}

// ProbeKey seals a probe under the primary key and opens it again: nil means
// access tokens can be stored and read now. It returns KeyStatus first
// (ErrNoKey or ErrKeyMismatch). No key material is in any error.
func (db *DB) ProbeKey() error {
	if db.keyErr != nil {
		return db.keyErr
	}
	var pt [16]byte
	if _, err := rand.Read(pt[:]); err != nil {
		return fmt.Errorf("store: key probe: %w", err)
	}
	aad := []byte("probe/" + db.kr.primary.ID)
	rec, err := db.kr.primary.Seal(pt[:], aad)
	if err != nil {
		return fmt.Errorf("store: key probe: %w", err)
	}
	out, err := db.kr.primary.Open(rec, aad)
	if err != nil || !bytes.Equal(out, pt[:]) {
		return fmt.Errorf("store: key probe: sealed data did not open again with key %q", db.kr.primary.ID)
	}
	return nil
}
