package store

import (
	"errors"
	"fmt"
	"time"
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
// could queue an event Safeclose would then sign. What a lease does with a
// record (Disposition):
//
//   - authenticated by a keyring key: delivered;
//   - under a key this keyring lacks (a replica not yet given a new key, a
//     key dropped before `keys rotate`), or while the keyring does not
//     match the data (ErrKeyMismatch, under which a genuine MAC fails
//     too): held, due again after HoldFor, neither delivered nor
//     dead-lettered, so nothing unchecked goes out and nothing genuine is
//     lost while the keys are fixed;
//   - not authenticated (framed only, or a MAC that fails under the key it
//     names): a dead letter whose reason says so, listed by `safeclose
//     webhooks list` as not authenticated; `safeclose webhooks replay
//     -vouch` (an operator who checked it) authenticates it and queues it
//     again, and a replay without -vouch refuses it. That covers, besides a
//     forgery, records written while the proxy ran without its keys and
//     those queued by a version before this one.
//
// While the keyring does not match the data, Enqueue refuses (503 to
// Plaid, which sends the webhook again later): a record authenticated then
// would fail its check once the keys are fixed.
//
// Without a keyring there is nothing to check a record with: every record
// is delivered, authenticated or not, so a proxy started without its keys
// still delivers what was queued.

// ErrUnauthenticated is a queue record that no key of the keyring
// authenticated: written without keys, or not by Safeclose.
var ErrUnauthenticated = errors.New("store: queue record not authenticated by the keyring")

// UnauthenticatedReason is the dead-letter reason of such a record.
const UnauthenticatedReason = "queue record not authenticated by the keyring (written without keys, or not by Safeclose): check it, then `safeclose webhooks replay -vouch` it"

// Auth is what a queue record's authentication says.
type Auth uint8

const (
	// Unauthenticated: framed only, or a MAC that does not verify under
	// the keyring key it names.
	Unauthenticated Auth = iota
	// Authenticated by a key of the keyring.
	Authenticated
	// UnknownKey: a MAC under a key the keyring lacks, or read without a
	// keyring: it cannot be checked here.
	UnknownKey
)

// Disposition is what a lease does with a queue record.
type Disposition uint8

const (
	// Deliver it.
	Deliver Disposition = iota
	// Hold it: not delivered, not dead-lettered, due again after
	// HoldFor. The record may be genuine but cannot be checked here: a
	// key this keyring lacks (another replica, mid-rotation, has it), or
	// a keyring that does not match the data (keyErr), under which a
	// genuine MAC fails too. Nothing unverified is delivered, and nothing
	// genuine is lost to a dead letter while an operator fixes the keys.
	Hold
	// DeadLetter it with UnauthenticatedReason.
	DeadLetter
)

// HoldFor is how long a held record waits before its next lease.
const HoldFor = time.Minute

// Disposition decides a lease's record given its Auth and the store's key
// status (nil, ErrNoKey or ErrKeyMismatch). Without a keyring every record
// is delivered: there is nothing to check one with.
func (kr *Keyring) Disposition(a Auth, keyErr error) Disposition {
	switch {
	case kr == nil || a == Authenticated:
		return Deliver
	case a == UnknownKey || errors.Is(keyErr, ErrKeyMismatch):
		return Hold
	}
	return DeadLetter
}

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

// OpenEntry decodes the queue record stored under id, which a key of the
// keyring must have authenticated (ErrUnauthenticated otherwise); without
// a keyring it is only checked for damage. A record whose id is not id is
// ErrCorrupt. kr may be nil.
func (kr *Keyring) OpenEntry(id string, b []byte) (Entry, error) {
	e, a, err := kr.ReadEntry(id, b)
	if err == nil && kr != nil && a != Authenticated {
		return Entry{}, fmt.Errorf("%w: entry %s", ErrUnauthenticated, id)
	}
	return e, err
}

// ReadEntry decodes the queue record stored under id whatever its
// authentication, and says what that is. A record that fails its frame
// check, or whose id is not id, is ErrCorrupt. kr may be nil.
func (kr *Keyring) ReadEntry(id string, b []byte) (e Entry, a Auth, err error) {
	framed := b
	if len(b) > 0 && b[0] == authVersion {
		kid, ok := recordKeyID(b)
		if !ok {
			return Entry{}, Unauthenticated, fmt.Errorf("store: decode entry: %w: authenticated envelope", ErrCorrupt)
		}
		framed = b[2+len(kid) : len(b)-macSize]
		switch {
		case kr == nil || kr.macs[kid] == nil:
			a = UnknownKey
		default:
			if _, _, err := kr.openRecord(entryBKey(id), b); err == nil {
				a = Authenticated
			}
		}
	}
	if e, err = DecodeEntry(framed); err != nil {
		return Entry{}, Unauthenticated, err
	}
	if id != "" && e.ID != id {
		return Entry{}, Unauthenticated, fmt.Errorf("store: decode entry: %w: entry %s stored under %s", ErrCorrupt, e.ID, id)
	}
	return e, a, nil
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

// ReplayRecord is what a replay of the dead letter rec, stored under id,
// queues again, due at now with no attempts counted, and the entry it holds:
//   - authenticated by a keyring key: the entry, authenticated again;
//   - under a key this keyring lacks, or read without a keyring: rec as it
//     is, so the MAC stays for whoever can check it (its attempts and due
//     time are not reset: they are inside what the MAC covers);
//   - not authenticated: with a keyring, only when vouch is set (an operator
//     checked it): authenticated now (ErrUnauthenticated otherwise);
//     without a keyring, framed as before.
//
// kr may be nil.
func (kr *Keyring) ReplayRecord(id string, rec []byte, vouch bool, now time.Time) ([]byte, Entry, error) {
	e, a, err := kr.ReadEntry(id, rec)
	if err != nil {
		return nil, Entry{}, err
	}
	switch {
	case a == UnknownKey:
		return rec, e, nil
	case a == Unauthenticated && kr != nil && !vouch:
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s: check it (safeclose webhooks list), then replay it with -vouch", ErrUnauthenticated, id)
	}
	e.Attempts, e.NextAt = 0, now
	b, err := kr.SealEntry(e)
	return b, e, err
}
