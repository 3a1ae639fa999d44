package store

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/safeclose/safeclose/store/internal/seal"
)

// Keyring holds the sealing keys: one primary for sealing, all for opening.
// It is immutable and safe for concurrent use. Key material is never printed.
type Keyring struct {
	primary *seal.Key
	keys    map[string]*seal.Key
	macs    map[string][]byte // id → record MAC key, HKDF-derived from the sealing key
}

// NewKeyring builds a keyring from id → 32-byte key.
func NewKeyring(primary string, keys map[string][]byte) (*Keyring, error) {
	kr := &Keyring{keys: make(map[string]*seal.Key, len(keys)), macs: make(map[string][]byte, len(keys))}
	for id, b := range keys {
		if strings.ContainsAny(id, ":,/\x00 ") {
			return nil, fmt.Errorf("store: key id %q: must not contain ':', ',', '/', spaces or NUL", id)
		}
		k, err := seal.NewKey(id, b)
		if err != nil {
			return nil, fmt.Errorf("store: key %q: %w", id, err)
		}
		kr.keys[id] = k
		// A separate key for record MACs, never the AES key itself (RATIONALE.md "Why authenticate every record").
		if kr.macs[id], err = hkdf.Key(sha256.New, b, nil, "safeclose record mac v1", 32); err != nil {
			return nil, fmt.Errorf("store: key %q: %w", id, err)
		}
	}
	kr.primary = kr.keys[primary]
	if kr.primary == nil {
		return nil, fmt.Errorf("store: primary key %q is not in the keyring", primary)
	}
	return kr, nil
}

// ParseKeyring reads "id1:BASE64,id0:BASE64": the first key is the primary.
// Keys are 32 bytes, standard or URL base64. Errors never include key
// material: they name an entry by its position, never by its id, because a
// keyring written the wrong way round ("BASE64:id") puts the key where the
// id belongs. For the same reason an id that is itself a key is refused.
func ParseKeyring(spec string) (*Keyring, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("store: empty keyring")
	}
	keys := map[string][]byte{}
	primary := ""
	for i, part := range strings.Split(spec, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("store: keyring entry %d: want id:base64", i+1)
		}
		if strings.ContainsAny(id, "/\x00 ") {
			return nil, fmt.Errorf("store: keyring entry %d: the key id must not contain '/', spaces or NUL (want id:base64)", i+1)
		}
		if len(decodeKey(id)) == 32 {
			return nil, fmt.Errorf("store: keyring entry %d: the key id is a key (want id:base64)", i+1)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("store: keyring entry %d: duplicate key id", i+1)
		}
		b := decodeKey(b64)
		if b == nil {
			return nil, fmt.Errorf("store: keyring entry %d: the key is not base64", i+1)
		}
		if len(b) != 32 {
			return nil, fmt.Errorf("store: keyring entry %d: the key is %d bytes, want 32", i+1, len(b))
		}
		keys[id] = b
		if i == 0 {
			primary = id
		}
	}
	return NewKeyring(primary, keys)
}

// decodeKey decodes s as standard or URL base64, padded or not; nil if it
// is none of them.
func decodeKey(s string) []byte {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b
		}
	}
	return nil
}

// PrimaryID is the id of the sealing key.
func (k *Keyring) PrimaryID() string { return k.primary.ID }

// String never prints key material.
func (k *Keyring) String() string { return "Keyring(primary=" + k.primary.ID + ")" }

// GenerateKey makes a new random 32-byte key and an id for it.
func GenerateKey() (id, b64 string, err error) {
	var b [32]byte
	var r [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(r[:]); err != nil {
		return "", "", err
	}
	return "k" + hex.EncodeToString(r[:]), base64.StdEncoding.EncodeToString(b[:]), nil
}
