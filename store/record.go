package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dgraph-io/badger/v4"
)

// Two record envelopes (RATIONALE.md "Why authenticate every record"):
//
//	authenticated: 0xA1 ‖ len(key id) ‖ key id ‖ payload ‖ HMAC-SHA256 (32 bytes)
//	checked:       0xC1 ‖ len(payload) (uint32 BE) ‖ CRC-32C(payload) (uint32 BE) ‖ payload
//
// Item records and the owner index are authenticated: the MAC key is derived
// with HKDF from a keyring key, and the MAC covers the Badger key too, so a
// record copied under another key (another tenant, user or item) is refused.
// Queue records are checked (length and CRC) and, with a keyring,
// authenticated around that (entry_auth.go); Link sessions, intents and
// orphans are only checked, so a flipped byte is refused, not misparsed.
const (
	authVersion    = 0xA1
	checkedVersion = 0xC1
	macSize        = sha256.Size
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func recordMAC(key, bkey, head, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(bkey)))
	m.Write([]byte("safeclose/record\x00"))
	m.Write(n[:])
	m.Write(bkey)
	m.Write(head)
	m.Write(payload)
	return m.Sum(nil)
}

// authenticate wraps payload, stored under bkey, with a MAC under the primary key.
func (kr *Keyring) authenticate(bkey, payload []byte) []byte {
	id := kr.primary.ID
	out := make([]byte, 0, 2+len(id)+len(payload)+macSize)
	out = append(out, authVersion, byte(len(id)))
	out = append(out, id...)
	head := out[:len(out):len(out)]
	out = append(out, payload...)
	return append(out, recordMAC(kr.macs[id], bkey, head, payload)...)
}

// recordKeyID is the id of the key that authenticated rec.
func recordKeyID(rec []byte) (string, bool) {
	if len(rec) < 2 || rec[0] != authVersion {
		return "", false
	}
	n := int(rec[1])
	if n == 0 || len(rec) < 2+n+macSize {
		return "", false
	}
	return string(rec[2 : 2+n]), true
}

// openRecord checks rec, stored under bkey, and returns its payload (a
// sub-slice of rec) and the id of the key that authenticated it. A record
// that fails the check is ErrCorrupt, unless the keyring itself is the
// problem (ErrNoKey, ErrKeyMismatch).
func (db *DB) openRecord(bkey, rec []byte) ([]byte, string, error) {
	if db.kr == nil {
		return nil, "", ErrNoKey
	}
	p, id, err := db.kr.openRecord(bkey, rec)
	if errors.Is(err, ErrCorrupt) && db.keyErr != nil {
		return nil, "", db.keyErr // wrong key bytes under the right id
	}
	return p, id, err
}

// openRecord checks an authenticated record stored under bkey.
func (kr *Keyring) openRecord(bkey, rec []byte) ([]byte, string, error) {
	id, ok := recordKeyID(rec)
	if !ok {
		return nil, "", ErrCorrupt
	}
	key := kr.macs[id]
	if key == nil {
		return nil, "", fmt.Errorf("%w: record authenticated with key %q, which is not in the keyring", ErrKeyMismatch, id)
	}
	head, payload, tag := rec[:2+len(id)], rec[2+len(id):len(rec)-macSize], rec[len(rec)-macSize:]
	if !hmac.Equal(tag, recordMAC(key, bkey, head, payload)) {
		return nil, "", ErrCorrupt
	}
	return payload, id, nil
}

// frame wraps a record we write and read ourselves (queue entries, Link
// sessions, intents, orphans) with its length and CRC-32C, so a flipped byte
// or a truncation is refused rather than misparsed (Issue 9.11).
func frame(payload []byte) []byte {
	return sealFrame(append(make([]byte, 9, 9+len(payload)), payload...))
}

// sealFrame fills in the header of out, a frame's 9 header bytes followed
// by the record's payload, and returns it: a record encoded in place after
// its header (EncodeEntry, encodeOrphan) is framed without a copy.
func sealFrame(out []byte) []byte {
	p := out[9:]
	out[0] = checkedVersion
	binary.BigEndian.PutUint32(out[1:5], uint32(len(p)))
	binary.BigEndian.PutUint32(out[5:9], crc32.Checksum(p, castagnoli))
	return out
}

// unframe checks a framed record and returns its payload.
func unframe(rec []byte) ([]byte, error) {
	if len(rec) < 9 || rec[0] != checkedVersion {
		return nil, fmt.Errorf("%w: not a framed record", ErrCorrupt)
	}
	p := rec[9:]
	if binary.BigEndian.Uint32(rec[1:5]) != uint32(len(p)) {
		return nil, fmt.Errorf("%w: record length", ErrCorrupt)
	}
	if binary.BigEndian.Uint32(rec[5:9]) != crc32.Checksum(p, castagnoli) {
		return nil, fmt.Errorf("%w: record checksum", ErrCorrupt)
	}
	return p, nil
}

func ownerKey(itemID string) []byte { return []byte("x/" + itemID) }

// owner reads and checks the owner index of itemID: "<tenant>\x00<user>".
func (db *DB) owner(txn *badger.Txn, itemID string) ([]byte, error) {
	xk := ownerKey(itemID)
	it, err := txn.Get(xk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	p, _, err := db.openRecord(xk, v)
	if err != nil {
		return nil, db.corrupt(err, "owner index", "", itemID)
	}
	return p, nil
}

// getItem reads and checks an item record. keyID is the key that
// authenticated it.
func (db *DB) getItem(txn *badger.Txn, tenant, itemID string) (rec itemRecord, keyID string, err error) {
	ik := itemKey(tenant, itemID)
	it, err := txn.Get(ik)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, "", ErrNotFound
	}
	if err != nil {
		return rec, "", err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return rec, "", err
	}
	p, keyID, err := db.openRecord(ik, v)
	if err == nil {
		err = json.Unmarshal(p, &rec)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		} else if rec.Tenant != tenant || rec.ItemID != itemID {
			err = ErrCorrupt
		}
	}
	if err != nil {
		return itemRecord{}, "", db.corrupt(err, "item", tenant, itemID)
	}
	return rec, keyID, nil
}

// corrupt names the record in err and logs an integrity failure: such a
// record is never served (RATIONALE.md "Why authenticate every record").
func (db *DB) corrupt(err error, what, tenant, itemID string) error {
	if errors.Is(err, ErrCorrupt) {
		db.log.Error("stored record failed its integrity check; refusing to serve it (restore the data directory from a backup)",
			"record", what, "tenant", tenant, "item_id", itemID)
	}
	return fmt.Errorf("store: %s %s: %w", what, itemID, err)
}

// unmarshalFramed checks a framed record and decodes its JSON payload.
func unmarshalFramed(rec []byte, v any) error {
	p, err := unframe(rec)
	if err != nil {
		return err
	}
	return json.Unmarshal(p, v)
}
