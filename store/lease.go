package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// LeaseNext leases one due entry (NextAt <= now, no live lease) to owner for
// d, so a lease covers exactly the work on one entry; the worker keeps it with
// Extend while it works. Tenants take turns: among the tenants that have a
// due entry and that allow accepts (nil accepts every tenant), it picks the
// first tenant whose name sorts after the tenant named by after (wrapping
// around), and leases that tenant's oldest due entry. ok is false when
// nothing is due.
//
// allow is asked about a tenant just before its entry is leased (so the
// tenant leased from is the last one allow accepted; the proxy's allow
// takes a slot of each tenant it accepts), with the store's lease lock
// held, and must not call the store. Leasing reads one record and writes
// nothing: leases live in memory (qindex.go), so its cost does not grow
// with the queue and concurrent leasers never conflict. See RATIONALE.md "Why one lease per entry, and
// tenants take turns" and "Why leases live in memory".
func (db *DB) LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (e Entry, ok bool, err error) {
	db.leaseMu.Lock()
	defer db.leaseMu.Unlock()
	return db.leaseNext(owner, d, after, allow)
}

// leaseNext is LeaseNext with db.leaseMu held.
func (db *DB) leaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (Entry, bool, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return Entry{}, false, ErrClosed
	}
	// Work leased on a full disk could not record its outcome: refuse it.
	if err := db.checkSpace(); err != nil {
		return Entry{}, false, err
	}
	for {
		now := db.now()
		token := uint64(now.UnixNano()) + db.ids.seq.Add(1)
		q, fresh := db.qi.pick(now.UnixNano(), now.Add(d).UnixNano(), token, after, allow)
		if q == nil {
			return Entry{}, false, nil
		}
		if fresh != nil { // the record as committed moments ago: no read
			e := *fresh
			e.LeaseOwner, e.LeaseUntil, e.LeaseToken = owner, now.Add(d), token
			return e, true, nil
		}
		var e Entry
		var bad error // the record is there but does not decode
		var auth Auth
		var kid string // the key its MAC names
		err := db.bdb.View(func(txn *badger.Txn) error {
			it, err := txn.Get([]byte("q/" + q.id))
			if err != nil {
				return err
			}
			return it.Value(func(v []byte) error {
				e, auth, bad = db.kr.ReadEntry(q.id, v)
				kid = EntryKeyID(v)
				return nil
			})
		})
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			db.qi.remove(q.id) // cannot happen while the index is right; heal it
			continue
		case err == nil && bad == nil && db.qg.Disposition(auth, kid) == Hold:
			// Not checkable here, maybe genuine: due again later (entry_auth.go).
			db.holding(q.id, token, e.Tenant, now)
			continue
		case err == nil && bad == nil && db.qg.Disposition(auth, kid) == DeadLetter:
			// Not delivered: a dead letter an operator can check and
			// replay (entry_auth.go).
			if err := db.bdb.Update(func(txn *badger.Txn) error { return db.deadUnauthenticated(txn, q.id) }); err != nil {
				db.qi.release(q.id, token)
				return Entry{}, false, noSpace(err)
			}
			if err := db.durable(); err != nil {
				return Entry{}, false, err
			}
			db.qi.remove(q.id)
			continue
		case err == nil && bad != nil:
			// A damaged record must not stall every tenant's queue: it is
			// moved aside (qc/) and logged, never half-parsed (Issue 9.11).
			if err := db.bdb.Update(func(txn *badger.Txn) error { return db.quarantine(txn, [][]byte{[]byte("q/" + q.id)}) }); err != nil {
				return Entry{}, false, noSpace(err)
			}
			if err := db.durable(); err != nil {
				return Entry{}, false, err
			}
			db.qi.remove(q.id)
			continue
		case err != nil:
			db.qi.release(q.id, token)
			return Entry{}, false, fmt.Errorf("store: lease: %w", err)
		}
		e.LeaseOwner, e.LeaseUntil, e.LeaseToken = owner, now.Add(d), token
		db.readAhead(q.id, now)
		return e, true, nil
	}
}

// readAhead reads the records queued after id (in id order, so in the
// order they arrived, the order their tenants lease them), at most
// aheadMax of them, and keeps copies of those without one in the index, as
// Enqueue keeps fresh ones: a backlog larger than freshMax is then read in
// runs by one iterator instead of one lookup a lease, so its last entries
// drain as fast as its first (issue 12). It is best effort: a record that
// fails to decode or read is left for its own lease to deal with.
func (db *DB) readAhead(id string, now time.Time) {
	if db.qg.PrimaryBad() {
		return // every entry is held (entry_auth.go): no copies to hand out
	}
	epoch, ok := db.qi.aheadStart(id)
	if !ok {
		return
	}
	var last []byte // the last id looked at
	es := make([]*Entry, 0, aheadMax)
	_ = db.bdb.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.PrefetchValues = []byte("q/"), false
		it := txn.NewIterator(opts)
		defer it.Close()
		seen := 0 // records looked at, kept or not: a read-ahead is bounded
		for it.Seek([]byte("q/" + id)); it.Valid() && seen <= aheadMax; it.Next() {
			seen++
			k := it.Item().Key()[len("q/"):]
			last = append(last[:0], k...)
			if string(k) == id || !db.qi.wantsAhead(k) {
				continue
			}
			_ = it.Item().Value(func(v []byte) error {
				if e, err := db.kr.OpenEntry(string(k), v); err == nil {
					es = append(es, &e)
				}
				return nil
			})
		}
		return nil
	})
	db.qi.keepAhead(epoch, now.UnixNano(), string(last), es)
}

// leaseHead is the part of an Entry the index load reads.
type leaseHead struct {
	Tenant string    `json:"tenant"`
	NextAt time.Time `json:"next_at"`
}

// loadQueue builds the queue index from the q/ records at Open. Stored lease
// fields are ignored: a lease does not outlive the process that held it.
// Damaged records are moved aside (qc/).
func (db *DB) loadQueue() error {
	var corrupt [][]byte
	now := db.now()
	err := db.bdb.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("q/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			var h leaseHead
			if err := iter.Item().Value(func(v []byte) error { return unmarshalFramed(entryFrame(v), &h) }); err != nil || h.Tenant == "" {
				corrupt = append(corrupt, iter.Item().KeyCopy(nil))
				continue
			}
			db.qi.add(string(iter.Item().Key()[len("q/"):]), h.Tenant, h.NextAt, now)
		}
		return nil
	})
	if err != nil || len(corrupt) == 0 {
		return err
	}
	if err := db.checkSpace(); err != nil {
		db.log.Warn("damaged webhook queue entries not moved aside: disk full", "count", len(corrupt))
		return nil
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error { return db.quarantine(txn, corrupt) }); err != nil {
		return err
	}
	return db.durable()
}

// Extend renews a held lease to now+d, so an entry whose work outlasts one
// lease is never handed to another worker. It fails with ErrStaleLease when
// the lease is no longer held.
func (db *DB) Extend(id string, lease uint64, d time.Duration) error {
	if !db.qi.extend(id, lease, db.now().Add(d).UnixNano()) {
		return fmt.Errorf("%w: %s", ErrStaleLease, id)
	}
	return nil
}

// Release gives a leased entry back without counting an attempt: it is due
// again at once (a graceful stop uses it for work it did not finish).
func (db *DB) Release(id string, lease uint64) error {
	if !db.qi.release(id, lease) {
		return fmt.Errorf("%w: %s", ErrStaleLease, id)
	}
	return nil
}

// holding makes a leased entry that cannot be checked here due again after
// HoldFor (in memory: a restart looks at it again at once), and says so in
// the log at most once a minute.
func (db *DB) holding(id string, token uint64, tenant string, now time.Time) {
	if q := db.qi.begin(id, token); q != nil {
		db.qi.end(q, true, false, now.Add(HoldFor))
	}
	db.qg.Held(db.log, id, tenant, db.keyErr, now)
}

// deadUnauthenticated moves the unauthenticated queue record of id to the
// dead letters, framed only (it is not authenticated now either), with the
// reason, and logs it.
func (db *DB) deadUnauthenticated(txn *badger.Txn, id string) error {
	k := []byte("q/" + id)
	it, err := txn.Get(k)
	if err != nil {
		return err
	}
	var e Entry
	if err := it.Value(func(v []byte) (err error) { e, _, err = db.kr.ReadEntry(id, v); return err }); err != nil {
		return err
	}
	e.LastError = UnauthenticatedReason
	b, err := EncodeEntry(e)
	if err != nil {
		return err
	}
	if err := txn.Delete(k); err != nil {
		return err
	}
	if err := txn.Set([]byte("d/"+id), b); err != nil {
		return err
	}
	LogDeadUnauthenticated(db.log, id, e.Tenant)
	return nil
}

// quarantine moves damaged queue records from q/ to qc/ (kept for an
// operator to inspect, never leased again) and logs their keys.
func (db *DB) quarantine(txn *badger.Txn, keys [][]byte) error {
	for _, k := range keys {
		it, err := txn.Get(k)
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := txn.Set(append([]byte("qc/"), k[len("q/"):]...), v); err != nil {
			return err
		}
		if err := txn.Delete(k); err != nil {
			return err
		}
		db.log.Error("store: damaged webhook queue entry moved aside (qc/); it will not be processed", "key", string(k))
	}
	return nil
}
