package store

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/safeclose/safeclose/store/internal/seal"
)

// What other backends (store/pg) share with this one, so a record means the
// same thing wherever it is stored: tokens are sealed with the same AAD,
// item and owner records carry the same MAC over the same record key, and
// the bytes move between backends unchanged (safeclose migrate).

// ItemRecordKey is the key an item record's MAC covers.
func ItemRecordKey(tenant, itemID string) []byte { return itemKey(tenant, itemID) }

// OwnerRecordKey is the key an owner record's MAC covers.
func OwnerRecordKey(itemID string) []byte { return ownerKey(itemID) }

// KeyIDs lists the keyring's key ids, sorted.
func (kr *Keyring) KeyIDs() []string {
	out := make([]string, 0, len(kr.keys))
	for id := range kr.keys {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Canary seals the canary of key id, which CheckCanary opens again.
func (kr *Keyring) Canary(id string) ([]byte, error) {
	k := kr.keys[id]
	if k == nil {
		return nil, fmt.Errorf("%w: key %q", ErrNoKey, id)
	}
	return k.Seal([]byte("safeclose-canary"), []byte("kc/"+id))
}

// CheckCanary reports whether rec is key id's canary sealed with the same key bytes.
func (kr *Keyring) CheckCanary(id string, rec []byte) bool {
	k := kr.keys[id]
	if k == nil {
		return false
	}
	_, err := k.Open(rec, []byte("kc/"+id))
	return err == nil
}

// Probe seals a random value under the primary key and opens it again.
func (kr *Keyring) Probe() error {
	var pt [16]byte
	if _, err := rand.Read(pt[:]); err != nil {
		return fmt.Errorf("store: key probe: %w", err)
	}
	aad := []byte("probe/" + kr.primary.ID)
	rec, err := kr.primary.Seal(pt[:], aad)
	if err != nil {
		return fmt.Errorf("store: key probe: %w", err)
	}
	out, err := kr.primary.Open(rec, aad)
	if err != nil || !bytes.Equal(out, pt[:]) {
		return fmt.Errorf("store: key probe: sealed data did not open again with key %q", kr.primary.ID)
	}
	return nil
}

// EncodeItem seals accessToken for the item's owner under the primary key
// and returns the authenticated item record.
func (kr *Keyring) EncodeItem(it Item, accessToken string) ([]byte, error) {
	sealed, err := kr.primary.Seal([]byte(accessToken), tokenAAD(it.Tenant, it.User, it.ItemID))
	if err != nil {
		return nil, err
	}
	return kr.reencodeItem(it, sealed)
}

func (kr *Keyring) reencodeItem(it Item, sealed []byte) ([]byte, error) {
	b, err := json.Marshal(itemRecord{Item: it, Sealed: sealed})
	if err != nil {
		return nil, err
	}
	return kr.authenticate(itemKey(it.Tenant, it.ItemID), b), nil
}

// SealedItem is a checked item record: the item, its sealed token and the
// ids of the keys that sealed the token and authenticated the record.
type SealedItem struct {
	Item
	sealed    []byte
	SealKeyID string
	MACKeyID  string
}

// DecodeItem checks an item record stored for tenant and itemID. A record
// that fails its MAC is ErrCorrupt; one under an unknown key ErrKeyMismatch.
func (kr *Keyring) DecodeItem(tenant, itemID string, rec []byte) (SealedItem, error) {
	if kr == nil {
		return SealedItem{}, ErrNoKey
	}
	p, macID, err := kr.openRecord(itemKey(tenant, itemID), rec)
	if err != nil {
		return SealedItem{}, err
	}
	var r itemRecord
	if err := json.Unmarshal(p, &r); err != nil {
		return SealedItem{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if r.Tenant != tenant || r.ItemID != itemID {
		return SealedItem{}, ErrCorrupt
	}
	sid, err := seal.KeyID(r.Sealed)
	if err != nil {
		return SealedItem{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return SealedItem{Item: r.Item, sealed: r.Sealed, SealKeyID: sid, MACKeyID: macID}, nil
}

// Token opens the sealed token of a checked item record.
func (kr *Keyring) Token(si SealedItem) (string, error) {
	k := kr.keys[si.SealKeyID]
	if k == nil {
		return "", fmt.Errorf("%w: item %s is sealed with key %q", ErrKeyMismatch, si.ItemID, si.SealKeyID)
	}
	pt, err := k.Open(si.sealed, tokenAAD(si.Tenant, si.User, si.ItemID))
	if err != nil {
		return "", fmt.Errorf("%w: item %s: %w", ErrKeyMismatch, si.ItemID, err)
	}
	return string(pt), nil
}

// Reencode authenticates si, with it as its new item fields (same tenant,
// user and item id), under the primary key; the token is re-sealed under
// the primary key when another key sealed it.
func (kr *Keyring) Reencode(si SealedItem, it Item) ([]byte, error) {
	sealed := si.sealed
	if si.SealKeyID != kr.primary.ID {
		tok, err := kr.Token(si)
		if err != nil {
			return nil, err
		}
		if sealed, err = kr.primary.Seal([]byte(tok), tokenAAD(si.Tenant, si.User, si.ItemID)); err != nil {
			return nil, err
		}
	}
	it.Tenant, it.User, it.ItemID = si.Tenant, si.User, si.ItemID
	return kr.reencodeItem(it, sealed)
}

// EncodeOwner authenticates the owner record of itemID.
func (kr *Keyring) EncodeOwner(tenant, user, itemID string) []byte {
	return kr.authenticate(ownerKey(itemID), []byte(tenant+"\x00"+user))
}

// DecodeOwner checks an owner record and returns its tenant, user and the
// id of the key that authenticated it.
func (kr *Keyring) DecodeOwner(itemID string, rec []byte) (tenant, user, macID string, err error) {
	if kr == nil {
		return "", "", "", ErrNoKey
	}
	p, macID, err := kr.openRecord(ownerKey(itemID), rec)
	if err != nil {
		return "", "", "", err
	}
	t, u, ok := bytes.Cut(p, []byte{0})
	if !ok {
		return "", "", "", ErrCorrupt
	}
	return string(t), string(u), macID, nil
}

// Frame and Unframe are the length+CRC envelope of records a backend writes
// and reads itself (record.go).
func Frame(payload []byte) []byte { return frame(payload) }

// Unframe checks a framed record and returns its payload (ErrCorrupt).
func Unframe(rec []byte) ([]byte, error) { return unframe(rec) }
