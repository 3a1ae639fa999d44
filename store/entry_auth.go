package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/safeclose/safeclose/internal/loglimit"
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
//   - not checkable here: held, due again after HoldFor, neither delivered
//     nor retried nor dead-lettered (either would rewrite it without its
//     MAC or under wrong bytes), until keys that can check it are there.
//     That is a MAC and no keyring (a proxy started without its keys), a
//     key this keyring lacks (a replica not yet given a new key, a key
//     dropped before `keys rotate`), a MAC failing under a key whose bytes
//     do not match the data, and every record while the primary key's
//     bytes do not match the data (a typo in a new key). PostgreSQL holds
//     one entry a lease call, so a replica without a key leaves the rest
//     to those that have it;
//   - not authenticated (framed only, or a MAC that fails under a good
//     key): a dead letter whose reason says so, listed by `safeclose
//     webhooks list` as not authenticated; `safeclose webhooks replay
//     -vouch` (an operator who checked it) authenticates it and queues it
//     again, and a replay without -vouch refuses it. That covers, besides a
//     forgery, records written while the proxy ran without its keys and
//     those queued by a version before this one;
//   - framed, with no keyring: delivered (nothing is checked without keys).
//
// While the primary key does not match the data, Enqueue refuses (503 to
// Plaid, which sends the webhook again later), and so does a replay: what
// they wrote would be authenticated under the wrong bytes.

// ErrUnauthenticated is a queue record that no key of the keyring
// authenticated: written without keys, or not by Safeclose.
var ErrUnauthenticated = errors.New("store: queue record not authenticated by the keyring")

// DamagedReason begins the dead-letter reason, or the listed last error, of
// a queue record that fails its frame check (followed by the error).
const DamagedReason = "damaged record: "

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
	// Hold it: neither delivered nor dead-lettered, looked at again after
	// HoldFor, until keys that can check it are there.
	Hold
	// DeadLetter it with UnauthenticatedReason.
	DeadLetter
)

// HoldFor is how long a held record waits before its next lease.
const HoldFor = time.Minute

// Disposition decides what a lease does with a record of Auth a whose MAC
// names key kid ("" for a framed one). badKey reports a keyring key whose
// bytes do not match the data (its canary): under it a genuine MAC fails
// too. The record is:
//   - held when nothing here can check it: a MAC and no keyring (a proxy
//     started without its keys), a key the keyring lacks (a replica not yet
//     given a new key, a key dropped before `keys rotate`), or a MAC that
//     fails under a bad key; and every record while the primary is bad,
//     since a retry or a dead letter would authenticate it under the wrong
//     bytes;
//   - delivered when a keyring key authenticated it, or when it is framed
//     and there is no keyring (nothing is checked then);
//   - dead-lettered otherwise: framed, or a MAC that fails under a good key.
func (kr *Keyring) Disposition(a Auth, kid string, badKey func(id string) bool) Disposition {
	switch {
	case kr == nil && a == UnknownKey:
		return Hold
	case kr == nil:
		return Deliver
	case badKey(kr.PrimaryID()):
		return Hold
	case a == Authenticated:
		return Deliver
	case a == UnknownKey, kid != "" && badKey(kid):
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

// OpenEntry decodes the queue record stored under id for delivery: a key
// of the keyring must have authenticated it, or, without a keyring, it must
// be framed only (a MAC cannot be checked then); ErrUnauthenticated
// otherwise. A record whose id is not id is ErrCorrupt. kr may be nil.
func (kr *Keyring) OpenEntry(id string, b []byte) (Entry, error) {
	e, a, err := kr.ReadEntry(id, b)
	if err == nil && kr.Disposition(a, "", func(string) bool { return false }) != Deliver {
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
// queues again (due at now, no attempts counted), and the entry it holds.
// A record a keyring key authenticated is authenticated again; one no key
// authenticated only when vouch is set (an operator checked it:
// ErrUnauthenticated otherwise). Without a keyring a framed record stays
// framed. It refuses what it cannot check or authenticate rightly: a MAC
// and no keyring, a key the keyring lacks, or a MAC that fails under a bad
// key (ErrKeyMismatch: replay it with the keys that can check it), and
// anything while the primary is bad (badKey: it would be authenticated
// under the wrong bytes). kr may be nil.
func (kr *Keyring) ReplayRecord(id string, rec []byte, vouch bool, now time.Time, badKey func(id string) bool) ([]byte, Entry, error) {
	e, a, err := kr.ReadEntry(id, rec)
	if err != nil {
		return nil, Entry{}, err
	}
	kid := EntryKeyID(rec)
	switch {
	case kr != nil && badKey(kr.PrimaryID()):
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s: the keyring's primary key %q does not match the data; fix the keyring, then replay", ErrKeyMismatch, id, kr.PrimaryID())
	case a == UnknownKey && kr == nil:
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s is authenticated (key %q): replay it with the keys set", ErrNoKey, id, kid)
	case a == UnknownKey:
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s is authenticated by key %q, which this keyring lacks: replay it with that key in the keyring", ErrKeyMismatch, id, kid)
	case a == Unauthenticated && kid != "" && badKey(kid):
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s: key %q does not match the data; fix the keyring, then replay", ErrKeyMismatch, id, kid)
	case a == Unauthenticated && kr != nil && !vouch:
		return nil, Entry{}, fmt.Errorf("%w: dead letter %s: check it (safeclose webhooks list), then replay it with -vouch", ErrUnauthenticated, id)
	}
	e.Attempts, e.NextAt = 0, now
	b, err := kr.SealEntry(e)
	return b, e, err
}

// QueueGuard is the queue-record check state each backend keeps beside its
// keyring: the keys whose bytes do not match the data (their canaries, found
// at Open), and the holds (counted, and logged at most once a minute). Both
// backends decide a lease's record, a replay and a hold through it.
type QueueGuard struct {
	kr   *Keyring
	bad  map[string]bool // set at Open only
	held atomic.Uint64
	logs loglimit.Limiter
}

// NewQueueGuard returns the guard of a store opened with kr (may be nil).
func NewQueueGuard(kr *Keyring) *QueueGuard {
	g := &QueueGuard{kr: kr, bad: map[string]bool{}}
	g.logs.Rate = 1.0 / 60
	return g
}

// MarkBad records, at Open, a keyring key whose bytes do not match the data.
func (g *QueueGuard) MarkBad(id string) { g.bad[id] = true }

// BadKey reports a keyring key whose bytes do not match the data.
func (g *QueueGuard) BadKey(id string) bool { return g.bad[id] }

// PrimaryBad reports that the keyring's primary key does not match the
// data: nothing may be authenticated under it.
func (g *QueueGuard) PrimaryBad() bool { return g.kr != nil && g.bad[g.kr.PrimaryID()] }

// Disposition is Keyring.Disposition with the store's bad keys.
func (g *QueueGuard) Disposition(a Auth, kid string) Disposition {
	return g.kr.Disposition(a, kid, g.BadKey)
}

// ReplayRecord is Keyring.ReplayRecord with the store's bad keys.
func (g *QueueGuard) ReplayRecord(id string, rec []byte, vouch bool, now time.Time) ([]byte, Entry, error) {
	return g.kr.ReplayRecord(id, rec, vouch, now, g.BadKey)
}

// Held counts a hold of entry id and logs it, at most once a minute.
func (g *QueueGuard) Held(log *slog.Logger, id, tenant string, keyErr error, now time.Time) {
	g.held.Add(1)
	if n, ok := g.logs.Allow(now); ok {
		log.Warn("store: webhook queue entry held, not delivered: it cannot be checked with this keyring (no keys, a key the keyring lacks, or keys that do not match the data); fix the keyring (safeclose check)",
			"id", id, "tenant", tenant, "key_status", fmt.Sprint(keyErr), "suppressed_before", n)
	}
}

// HeldTotal counts the holds since Open: entries this keyring cannot check,
// each held for HoldFor.
func (g *QueueGuard) HeldTotal() uint64 { return g.held.Load() }

// LogDeadUnauthenticated logs an entry dead-lettered for
// UnauthenticatedReason.
func LogDeadUnauthenticated(log *slog.Logger, id, tenant string) {
	log.Error("store: webhook queue entry not authenticated by the keyring: not delivered, moved to the dead letters", "id", id, "tenant", tenant)
}
