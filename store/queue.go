package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Header is one stored request header.
type Header struct{ Name, Value string }

// Entry is a received webhook in the durable queue.
type Entry struct {
	ID         string    `json:"id"` // assigned by Enqueue; lexicographically time-ordered
	Tenant     string    `json:"tenant"`
	Body       []byte    `json:"body"` // raw bytes as received
	Headers    []Header  `json:"headers,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	BodySHA256 [32]byte  `json:"body_sha256"`
	Attempts   int       `json:"attempts"`
	NextAt     time.Time `json:"next_at"`
	LastError  string    `json:"last_error,omitempty"`
	LeaseToken uint64    `json:"lease_token,omitempty"` // set by Lease
	LeaseOwner string    `json:"lease_owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`

	// Authenticated is set by DeadLetters: whether a key of the keyring
	// authenticated the record (entry_auth.go). Never stored.
	Authenticated bool `json:"-"`
}

// DecodeEntry decodes a queue record; a record that fails its length or CRC
// check is ErrCorrupt, and records without id or tenant are refused.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	b, err := unframe(b)
	if err != nil {
		return Entry{}, fmt.Errorf("store: decode entry: %w", err)
	}
	if fast, ok := decodeEntryJSON(b); ok {
		e = fast
	} else if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("store: decode entry: %w", err)
	}
	if e.ID == "" || e.Tenant == "" {
		return Entry{}, errors.New("store: decode entry: missing id or tenant")
	}
	return e, nil
}

type idGen struct{ seq atomic.Uint64 }

// next returns a sortable id: 16 hex digits of unix nanos, 8 of a sequence.
func (g *idGen) next(now time.Time) string {
	var b [24]byte
	n := strconv.AppendUint(b[:0], uint64(now.UnixNano()), 16)
	out := make([]byte, 0, 24)
	for range 16 - len(n) {
		out = append(out, '0')
	}
	out = append(out, n...)
	s := strconv.AppendUint(b[:0], g.seq.Add(1)&0xffffffff, 16)
	for range 8 - len(s) {
		out = append(out, '0')
	}
	return string(append(out, s...))
}

type enqueueReq struct {
	ctx  context.Context
	e    Entry
	done chan enqueueRes
}

type enqueueRes struct {
	id  string
	dup bool
	err error
}

func dedupeKey(tenant string, sum [32]byte) []byte {
	return []byte("m/" + tenant + "\x00" + hex.EncodeToString(sum[:]))
}

// Enqueue stores a webhook with its dedupe marker in one synced transaction
// and returns after the commit. Concurrent callers share one commit (group
// commit). duplicate is true, nothing is written, and id is the first copy's
// id, when a marker for the same tenant and body hash names an entry still
// waiting for its delivery (waiting); otherwise the marker is taken over.
func (db *DB) Enqueue(ctx context.Context, e Entry) (id string, duplicate bool, err error) {
	if db.qg.PrimaryBad() {
		// A record authenticated under a primary key that does not match
		// the data would fail its check once the keyring is fixed:
		// refused (503), so Plaid sends it again later (entry_auth.go).
		return "", false, fmt.Errorf("store: enqueue: %w", db.keyErr)
	}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return "", false, ErrClosed
	}
	r := &enqueueReq{ctx: ctx, e: e, done: make(chan enqueueRes, 1)}
	select {
	case db.reqs <- r:
		db.closeMu.RUnlock()
	case <-ctx.Done():
		db.closeMu.RUnlock()
		return "", false, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.id, res.dup, res.err
	case <-ctx.Done():
		// The batch may still commit; a retry by Plaid is then a duplicate.
		return "", false, ctx.Err()
	}
}

// committer batches pending Enqueue requests into transactions: one batch
// is everything that arrived while the previous one was being committed. A
// batch is answered once a sync round has made it durable (durable.go); the
// committer does not wait for that, so the next batch is committed while
// the previous one is being synced, and both share the next round.
func (db *DB) committer() {
	defer close(db.done)
	var acks sync.WaitGroup
	defer acks.Wait() // before done: Close closes Badger after it
	for {
		var batch []*enqueueReq // handed to the batch's answer, never reused
		select {
		case <-db.stop:
			db.drain()
			return
		case r := <-db.reqs:
			batch = append(make([]*enqueueReq, 0, 16), r)
		}
	fill:
		for len(batch) < db.max {
			select {
			case r := <-db.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitBatch(batch, &acks)
	}
}

func (db *DB) drain() {
	for {
		select {
		case r := <-db.reqs:
			r.done <- enqueueRes{err: ErrClosed}
		default:
			return
		}
	}
}

func (db *DB) commitBatch(batch []*enqueueReq, acks *sync.WaitGroup) {
	res := make([]enqueueRes, len(batch))
	now := db.now()
	var added []Entry // entries written by the attempt that commits
	err := func() error {
		if err := db.checkSpace(); err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			txn := db.bdb.NewTransaction(true)
			seen := map[string]string{} // marker → id of its entry in this batch
			added = added[:0]
			var err error
			for i, r := range batch {
				res[i] = enqueueRes{}
				if r.ctx.Err() != nil {
					res[i].err = r.ctx.Err()
					continue
				}
				mk := dedupeKey(r.e.Tenant, r.e.BodySHA256)
				if id, ok := seen[string(mk)]; ok {
					res[i].dup, res[i].id = true, id
					continue
				}
				// A duplicate answers the id of the first copy (the marker's
				// value), while that copy waits for its delivery (waiting).
				if it, gerr := txn.Get(mk); gerr == nil {
					var first string
					if err = it.Value(func(v []byte) error { first = string(v); return nil }); err != nil {
						break
					}
					var wait bool
					if wait, err = db.waiting(txn, first, now); err != nil {
						break
					}
					if wait {
						res[i].dup, res[i].id = true, first
						continue
					}
				} else if !errors.Is(gerr, badger.ErrKeyNotFound) {
					err = gerr
					break
				}
				e := r.e
				e.Body, e.Headers = bytes.Clone(e.Body), slices.Clone(e.Headers) // kept for the first lease (qindex.go)
				e.ID = db.ids.next(now)
				if e.NextAt.IsZero() {
					e.NextAt = now
				}
				b, merr := db.kr.SealEntry(e)
				if merr != nil {
					res[i].err = merr
					continue
				}
				if err = txn.Set([]byte("q/"+e.ID), b); err != nil {
					break
				}
				if err = txn.SetEntry(badger.NewEntry(mk, []byte(e.ID)).WithTTL(db.ttl)); err != nil {
					break
				}
				res[i].id = e.ID
				added = append(added, e)
				seen[string(mk)] = e.ID
			}
			if err == nil {
				err = txn.Commit()
			} else {
				txn.Discard()
			}
			if errors.Is(err, badger.ErrConflict) && attempt < 5 {
				continue
			}
			return noSpace(err)
		}
	}()
	if err != nil {
		answer(batch, res, err)
		return
	}
	// Every answer waits for the sync round, duplicates too: their first copy
	// may have been committed by the previous batch, not yet synced.
	acks.Add(1)
	go func() {
		defer acks.Done()
		err := db.durable()
		if err == nil {
			for i := range added { // visible to leases only once durable
				e := &added[i]
				db.qi.addFresh(e.ID, e.Tenant, e.NextAt, now, e)
			}
		}
		answer(batch, res, err)
	}()
}

// waiting reports whether entry id, the first copy of a body, is queued
// and its next delivery has not begun: not leased (a lease that ran out
// counts as not leased: the entry will be delivered again) and no outcome
// being written. Only then is a copy of the same body a duplicate. Plaid
// webhooks carry no event id, and some codes repeat byte for byte as new
// events (TRANSACTIONS SYNC_UPDATES_AVAILABLE once an item's history is
// in): a copy that arrives before the first copy's delivery begins is
// covered by it (the app acts on the first copy after both arrived), one
// that arrives later is a new event, or a retry the app handles as any
// duplicate (RATIONALE.md "Why dedupe on the body hash").
//
// The record's read is part of txn, so an outcome committed meanwhile
// (Complete, DeadLetter) makes the batch retry on a conflict. An entry
// committed but not yet durable is not in the index yet, and cannot have
// been leased: it is waiting.
func (db *DB) waiting(txn *badger.Txn, id string, now time.Time) (bool, error) {
	if _, err := txn.Get([]byte("q/" + id)); errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return !db.qi.started(id, now.UnixNano()), nil
}

// answer sends each request its result, or err when the batch failed.
func answer(batch []*enqueueReq, res []enqueueRes, err error) {
	for i, r := range batch {
		if err != nil && res[i].err == nil {
			res[i] = enqueueRes{err: fmt.Errorf("store: enqueue: %w", err)}
		}
		r.done <- res[i]
	}
}

// Lease hands out up to max due entries (NextAt <= now, no live lease) to
// owner for d, tenants in turn (LeaseNext). An entry whose lease expires
// becomes visible again.
func (db *DB) Lease(owner string, d time.Duration, max int) ([]Entry, error) {
	db.leaseMu.Lock()
	defer db.leaseMu.Unlock()
	var out []Entry
	last := ""
	for len(out) < max {
		e, ok, err := db.leaseNext(owner, d, last, nil)
		if err != nil {
			return out, err
		}
		if !ok {
			break
		}
		out = append(out, e)
		last = e.Tenant
	}
	return out, nil
}

// finish writes the outcome of a held lease: fn runs in one transaction on
// the entry as stored. While it runs the entry cannot be leased again. gone
// says the entry leaves the queue; otherwise it is due at next.
func (db *DB) finish(id string, lease uint64, read, gone bool, next func(*Entry) time.Time, fn func(txn *badger.Txn, e *Entry) error) error {
	q := db.qi.begin(id, lease)
	if q == nil {
		return fmt.Errorf("%w: %s", ErrStaleLease, id)
	}
	var e Entry
	err := db.outcome(func(txn *badger.Txn) error {
		e = Entry{ID: id}
		if read {
			it, err := txn.Get([]byte("q/" + id))
			if err != nil {
				return err
			}
			if err := it.Value(func(v []byte) (err error) { e, err = db.kr.OpenEntry(id, v); return err }); err != nil {
				return err
			}
		}
		e.LeaseOwner, e.LeaseUntil, e.LeaseToken = "", time.Time{}, 0
		return fn(txn, &e)
	})
	var at time.Time
	if err == nil && next != nil {
		at = next(&e)
	}
	db.qi.end(q, err == nil, gone, at)
	return err
}

// Complete removes a processed entry from the queue and leaves a done mark.
func (db *DB) Complete(id string, lease uint64) error {
	return db.finish(id, lease, false, true, nil, func(txn *badger.Txn, _ *Entry) error { return db.complete(txn, id) })
}

// complete is Complete's writes in txn.
func (db *DB) complete(txn *badger.Txn, id string) error {
	if err := txn.Delete([]byte("q/" + id)); err != nil {
		return err
	}
	return txn.SetEntry(badger.NewEntry([]byte("w/"+id), []byte(db.now().UTC().Format(time.RFC3339Nano))).WithTTL(7 * 24 * time.Hour))
}

// CompleteRecordingOrphan is RecordOrphan and Complete in one transaction:
// the outcome of a webhook that names an item nobody holds. Written apart,
// the orphan took a transaction of its own for every such webhook, about
// as much of a worker's CPU as the outcome's (issue 12). fresh reports
// whether the orphan is new. On an error nothing is written: the entry is
// still held, and the caller may write both apart (an orphan the store
// refuses must not keep its entry queued).
func (db *DB) CompleteRecordingOrphan(id string, lease uint64, o Orphan) (fresh bool, err error) {
	w, err := db.orphanWrite(o)
	if err != nil {
		return false, err
	}
	err = db.finish(id, lease, false, true, nil, func(txn *badger.Txn, _ *Entry) (err error) {
		if fresh, err = w.put(txn); err != nil {
			return err
		}
		return db.complete(txn, id)
	})
	return fresh && err == nil, err
}

// Retry releases the lease, counts the attempt, and makes the entry due at next.
func (db *DB) Retry(id string, lease uint64, next time.Time, reason string) error {
	return db.finish(id, lease, true, false, func(*Entry) time.Time { return next }, func(txn *badger.Txn, e *Entry) error {
		e.Attempts++
		e.NextAt, e.LastError = next, reason
		b, err := db.kr.SealEntry(*e)
		if err != nil {
			return err
		}
		return txn.Set([]byte("q/"+id), b)
	})
}

// DeadLetter moves a leased entry to the dead-letter set.
func (db *DB) DeadLetter(id string, lease uint64, reason string) error {
	return db.finish(id, lease, true, true, nil, func(txn *badger.Txn, e *Entry) error {
		e.Attempts++
		e.LastError = reason
		b, err := db.kr.SealEntry(*e)
		if err != nil {
			return err
		}
		if err := txn.Delete([]byte("q/" + id)); err != nil {
			return err
		}
		return txn.Set([]byte("d/"+id), b)
	})
}

// DeadLetters lists up to limit dead letters, oldest first.
func (db *DB) DeadLetters(limit int) ([]Entry, error) {
	var out []Entry
	err := db.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("d/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid() && len(out) < limit; iter.Next() {
			var e Entry
			var a Auth
			id := string(iter.Item().Key()[len("d/"):])
			var bad error
			if err := iter.Item().Value(func(v []byte) error { e, a, bad = db.kr.ReadEntry(id, v); return nil }); err != nil {
				return err
			}
			if bad != nil { // listed, so that it can be seen; a replay refuses it
				e = Entry{ID: id, LastError: DamagedReason + bad.Error()}
			}
			e.Authenticated = a == Authenticated
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Replay moves a dead letter back to the queue with its attempts reset. One
// no keyring key authenticated is refused unless vouch is set
// (Keyring.ReplayRecord).
func (db *DB) Replay(id string, vouch bool) error {
	var e Entry
	err := db.update(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("d/" + id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: dead letter %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		var b []byte
		if b, e, err = db.qg.ReplayRecord(id, v, vouch, db.now()); err != nil {
			return err
		}
		if err := txn.Delete([]byte("d/" + id)); err != nil {
			return err
		}
		return txn.Set([]byte("q/"+id), b)
	})
	if err == nil {
		db.qi.add(id, e.Tenant, e.NextAt, db.now())
	}
	return err
}

// QueueLen counts entries waiting or leased. It is O(1): the count is kept
// by the in-memory queue index (qindex.go).
func (db *DB) QueueLen() (int, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return 0, ErrClosed
	}
	return db.qi.len(), nil
}
