// Package seal is the AEAD envelope for secrets at rest:
//
//	record = version (1 byte) ‖ len(key id) (1 byte) ‖ key id ‖ nonce (12 bytes) ‖ ciphertext+tag
//
// sealed with AES-256-GCM under the named key, with associated data that
// binds the record to its owner, so a record copied elsewhere fails to open.
// It imports nothing from the module.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Version is the only record version written and read.
const Version = 1

const nonceSize = 12

var (
	ErrMalformed = errors.New("seal: malformed record")
	ErrOpen      = errors.New("seal: record does not open (wrong key or associated data)")
	ErrKeySize   = errors.New("seal: key must be 32 bytes")
)

// Key is one AES-256-GCM key with its id.
type Key struct {
	ID   string
	aead cipher.AEAD
}

// NewKey builds a key; secret must be 32 bytes and id 1..255 bytes.
func NewKey(id string, secret []byte) (*Key, error) {
	if len(secret) != 32 {
		return nil, ErrKeySize
	}
	if id == "" || len(id) > 255 {
		return nil, fmt.Errorf("seal: key id must be 1..255 bytes")
	}
	b, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Key{ID: id, aead: g}, nil
}

// Seal encrypts plaintext under k with a fresh random nonce.
func (k *Key) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 0, 2+len(k.ID)+nonceSize+len(plaintext)+k.aead.Overhead())
	out = append(out, Version, byte(len(k.ID)))
	out = append(out, k.ID...)
	nonce := out[len(out) : len(out)+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out = out[:len(out)+nonceSize]
	return k.aead.Seal(out, nonce, plaintext, aad), nil
}

// KeyID returns the id of the key a record was sealed with.
func KeyID(rec []byte) (string, error) {
	if len(rec) < 2 || rec[0] != Version {
		return "", ErrMalformed
	}
	n := int(rec[1])
	if n == 0 || len(rec) < 2+n+nonceSize+16 {
		return "", ErrMalformed
	}
	return string(rec[2 : 2+n]), nil
}

// Open decrypts rec with k; the record's key id must be k's.
func (k *Key) Open(rec, aad []byte) ([]byte, error) {
	id, err := KeyID(rec)
	if err != nil {
		return nil, err
	}
	if id != k.ID {
		return nil, fmt.Errorf("%w: sealed with key %q", ErrOpen, id)
	}
	off := 2 + len(id)
	nonce := rec[off : off+nonceSize]
	pt, err := k.aead.Open(nil, nonce, rec[off+nonceSize:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
