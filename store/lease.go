package store

import (
	"slices"
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
// allow is called with the store's lease lock held and must not call the
// store. The scan reads the whole queue, like Lease; see RATIONALE.md "Why
// one lease per entry, and tenants take turns".
func (db *DB) LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (e Entry, ok bool, err error) {
	db.leaseMu.Lock()
	defer db.leaseMu.Unlock()
	now := db.now()
	err = db.update(func(txn *badger.Txn) error {
		ok = false
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("q/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		oldest := map[string]Entry{} // tenant → its oldest due entry (ids are time-ordered)
		for iter.Rewind(); iter.Valid(); iter.Next() {
			var c Entry
			if err := iter.Item().Value(func(v []byte) (err error) { c, err = DecodeEntry(v); return err }); err != nil {
				return err
			}
			if c.NextAt.After(now) || c.LeaseUntil.After(now) {
				continue
			}
			if _, seen := oldest[c.Tenant]; seen || (allow != nil && !allow(c.Tenant)) {
				continue
			}
			oldest[c.Tenant] = c
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
		c := oldest[pick]
		c.LeaseOwner = owner
		c.LeaseUntil = now.Add(d)
		c.LeaseToken = uint64(now.UnixNano()) + db.ids.seq.Add(1)
		b, err := EncodeEntry(c)
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

// Extend renews a held lease to now+d, so an entry whose work outlasts one
// lease is never handed to another worker. It fails with ErrStaleLease when
// the lease is no longer held.
func (db *DB) Extend(id string, lease uint64, d time.Duration) error {
	return db.withLease(id, lease, func(txn *badger.Txn, e *Entry) error {
		e.LeaseUntil = db.now().Add(d)
		b, err := EncodeEntry(*e)
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
		b, err := EncodeEntry(*e)
		if err != nil {
			return err
		}
		return txn.Set([]byte("q/"+id), b)
	})
}
