package store

import (
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// leaseWindow is how many entries LeaseNext looks at after the first
// candidate for other tenants' turns: it bounds the scan when one tenant has a
// backlog. A tenant further back is still reached, because the worker cap
// (allow) takes a busy tenant's entries out of the candidates.
const leaseWindow = 32

// LeaseNext leases one due entry (NextAt <= now, no live lease) to owner for
// d, so a lease covers exactly the work on one entry; the worker keeps it with
// Extend while it works. Tenants take turns: among the tenants that have a
// due entry and that allow accepts (nil accepts every tenant), it picks the
// first tenant whose name sorts after the tenant named by after (wrapping
// around), and leases that tenant's oldest due entry. Only tenants seen within
// leaseWindow entries after the first candidate take part. ok is false when
// nothing is due.
//
// allow is called with the store's lease lock held and must not call the
// store. The scan skips entries that are not due, leased or refused, like
// Lease; see RATIONALE.md "Why one lease per entry, and tenants take turns".
func (db *DB) LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (e Entry, ok bool, err error) {
	db.leaseMu.Lock()
	defer db.leaseMu.Unlock()
	now := db.now()
	err = db.update(func(txn *badger.Txn) error {
		ok = false
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("q/")
		iter := txn.NewIterator(opts) // closed after the scan, before any write
		oldest := map[string][]byte{} // tenant → key of its oldest due entry (ids are time-ordered)
		var corrupt [][]byte
		window := -1 // entries left to look at once a candidate is found
		for iter.Rewind(); iter.Valid() && window != 0; iter.Next() {
			if window > 0 {
				window--
			}
			var h leaseHead // the scan reads only what it needs, not the body
			if err := iter.Item().Value(func(v []byte) error { return unmarshalFramed(v, &h) }); err != nil {
				// A damaged record must not stall every tenant's queue: it is
				// moved aside (qc/) and logged, never half-parsed (Issue 9.11).
				corrupt = append(corrupt, iter.Item().KeyCopy(nil))
				continue
			}
			if h.NextAt.After(now) || h.LeaseUntil.After(now) {
				continue
			}
			if _, seen := oldest[h.Tenant]; seen || (allow != nil && !allow(h.Tenant)) {
				continue
			}
			oldest[h.Tenant] = iter.Item().KeyCopy(nil)
			if window < 0 {
				window = leaseWindow
			}
		}
		iter.Close()
		if err := db.quarantine(txn, corrupt); err != nil {
			return err
		}
		if len(oldest) == 0 {
			return nil
		}
		names := make([]string, 0, len(oldest))
		for n := range oldest {
			names = append(names, n)
		}
		slices.Sort(names)
		pick := names[0]
		if i, _ := slices.BinarySearch(names, after); i < len(names) {
			if names[i] == after {
				i++
			}
			if i < len(names) {
				pick = names[i]
			}
		}
		it, err := txn.Get(oldest[pick])
		if err != nil {
			return err
		}
		var c Entry
		if err := it.Value(func(v []byte) (err error) { c, err = decodeEntry(v); return err }); err != nil {
			return err
		}
		c.LeaseOwner = owner
		c.LeaseUntil = now.Add(d)
		c.LeaseToken = uint64(now.UnixNano()) + db.ids.seq.Add(1)
		b, err := encodeEntry(c)
		if err != nil {
			return err
		}
		if err := txn.Set([]byte("q/"+c.ID), b); err != nil {
			return err
		}
		e, ok = c, true
		return nil
	})
	if err != nil {
		return Entry{}, false, err
	}
	return e, ok, nil
}

// leaseHead is the part of an Entry the lease scan reads.
type leaseHead struct {
	Tenant     string    `json:"tenant"`
	NextAt     time.Time `json:"next_at"`
	LeaseUntil time.Time `json:"lease_until"`
}

// Extend renews a held lease to now+d, so an entry whose work outlasts one
// lease is never handed to another worker. It fails with ErrStaleLease when
// the lease is no longer held.
func (db *DB) Extend(id string, lease uint64, d time.Duration) error {
	return db.withLease(id, lease, func(txn *badger.Txn, e *Entry) error {
		e.LeaseUntil = db.now().Add(d)
		b, err := encodeEntry(*e)
		if err != nil {
			return err
		}
		return txn.Set([]byte("q/"+id), b)
	})
}

// Release gives a leased entry back without counting an attempt: it is due
// again at once (a graceful stop uses it for work it did not finish).
func (db *DB) Release(id string, lease uint64) error {
	return db.withLease(id, lease, func(txn *badger.Txn, e *Entry) error {
		e.LeaseOwner, e.LeaseUntil, e.LeaseToken = "", time.Time{}, 0
		b, err := encodeEntry(*e)
		if err != nil {
			return err
		}
		return txn.Set([]byte("q/"+id), b)
	})
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
