package store

import (
	"errors"
	"fmt"
)

// Queue records are authenticated when the store has a keyring
// (RATIONALE.md "Why authenticate every record"): the framed entry
// (EncodeEntry) goes inside the authenticated envelope, under the logical
// key "queue\x00<id>", the same in both backends and in q/ and d/, so a
// record survives a dead letter, a replay and a migration unchanged.
//
// A queue record is what the workers forward to a tenant's app, signed by
// Safeclose. Framed only, anyone who could write the database (a role
// shared with another app, a restored backup, an SQL injection elsewhere)
// could queue an event Safeclose would then sign. With a keyring, a
// record that no keyring key authenticated is never delivered: it becomes
// a dead letter whose reason says so, listed by `safeclose webhooks list`,
// and `safeclose webhooks replay` (an operator vouching for it)
// authenticates it and queues it again. That covers, besides a forgery,
// the records written while the proxy ran without its keys and those
// queued by a version before this one.
//
// Without a keyring there is nothing to check a record with: every record
// is read as before, authenticated or not, so a proxy started without its
// keys still delivers what was queued.

// ErrUnauthenticated is a queue record that no key of the keyring
// authenticated: written without keys, under a key since removed, or not
// by Safeclose.
var ErrUnauthenticated = errors.New("store: queue record not authenticated by the keyring")

// UnauthenticatedReason is the dead-letter reason of such a record.
const UnauthenticatedReason = "queue record not authenticated by the keyring (written without keys, under a removed key, or not by Safeclose): review it, then `safeclose webhooks replay` it"

func entryBKey(id string) []byte { return []byte("queue\x00" + id) }

// SealEntry encodes e as a queue record: framed (EncodeEntry) and, when kr
// is not nil, authenticated under its primary key. kr may be nil.
func (kr *Keyring) SealEntry(e Entry) ([]byte, error) {
	b, err := EncodeEntry(e)
	if err != nil || kr == nil {
		return b, err
	}
	return kr.authenticate(entryBKey(e.ID), b), nil
}

// OpenEntry decodes the queue record stored under id for delivery. With a
// keyring it must be authenticated by one of the keyring's keys
// (ErrUnauthenticated otherwise); without one it is only checked for
// damage. A record whose id is not id is ErrCorrupt. kr may be nil.
func (kr *Keyring) OpenEntry(id string, b []byte) (Entry, error) {
	e, authed, err := kr.ReadEntry(id, b)
	if err == nil && kr != nil && !authed {
		return Entry{}, fmt.Errorf("%w: entry %s", ErrUnauthenticated, id)
	}
	return e, err
}

// ReadEntry decodes the queue record stored under id whether or not it is
// authenticated, for what an operator reads (dead letters) and for moving
// records; authenticated says whether a key of kr authenticated it. An
// authenticated record whose MAC does not verify is read, unauthenticated.
// kr may be nil.
func (kr *Keyring) ReadEntry(id string, b []byte) (e Entry, authenticated bool, err error) {
	framed := b
	if len(b) > 0 && b[0] == authVersion {
		kid, ok := recordKeyID(b)
		if !ok {
			return Entry{}, false, fmt.Errorf("store: decode entry: %w: authenticated envelope", ErrCorrupt)
		}
		framed = b[2+len(kid) : len(b)-macSize]
		if kr != nil {
			if _, _, err := kr.openRecord(entryBKey(id), b); err == nil {
				authenticated = true
			}
		}
	}
	if e, err = DecodeEntry(framed); err != nil {
		return Entry{}, false, err
	}
	if id != "" && e.ID != id {
		return Entry{}, false, fmt.Errorf("store: decode entry: %w: entry %s stored under %s", ErrCorrupt, e.ID, id)
	}
	return e, authenticated, nil
}

// entryFrame is the framed entry inside a queue record, unchecked, for
// reading the fields an index needs (the delivery reads check it).
func entryFrame(b []byte) []byte {
	if len(b) > 0 && b[0] == authVersion {
		if kid, ok := recordKeyID(b); ok {
			return b[2+len(kid) : len(b)-macSize]
		}
	}
	return b
}

// EntryKeyID is the id of the key that authenticated a queue record, or ""
// for a framed-only one (unchecked).
func EntryKeyID(b []byte) string {
	id, _ := recordKeyID(b)
	return id
}
