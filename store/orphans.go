package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Intent is written, synced, before Safeclose asks Plaid to exchange a
// public token, and resolved once the outcome is known. One left behind
// means the process died (or lost Plaid's answer) inside the exchange.
type Intent struct {
	ID            string    `json:"id"`
	Tenant        string    `json:"tenant"`
	User          string    `json:"user"`
	LinkTokenHash string    `json:"link_token_hash,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// Orphan kinds.
const (
	// OrphanLostExchange: Plaid may have made an item whose access token we
	// never saw (a lost answer or a crash inside the exchange).
	OrphanLostExchange = "lost_exchange"
	// OrphanUnknownItem: a webhook named an item no user holds.
	OrphanUnknownItem = "unknown_item"
)

// Orphan is a possibly billable Plaid item that nobody holds, for the admin.
type Orphan struct {
	Kind          string    `json:"kind"`
	Tenant        string    `json:"tenant"`
	User          string    `json:"user,omitempty"`
	ItemID        string    `json:"item_id,omitempty"`
	LinkTokenHash string    `json:"link_token_hash,omitempty"`
	IntentID      string    `json:"intent_id,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	Count         int       `json:"count"`
}

func intentKey(id string) []byte { return []byte("ei/" + id) }

func orphanKey(o Orphan) []byte {
	id := o.ItemID
	if id == "" {
		id = "intent:" + o.IntentID
	}
	return []byte("o/" + o.Tenant + "\x00" + id)
}

// BeginExchange records an intent (synced) and returns it with its id set.
func (db *DB) BeginExchange(in Intent) (Intent, error) {
	if in.Tenant == "" || in.User == "" {
		return in, errors.New("store: begin exchange: tenant and user are required")
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = db.now().UTC()
	}
	in.ID = db.ids.next(in.CreatedAt)
	b, err := json.Marshal(in)
	if err != nil {
		return in, fmt.Errorf("store: begin exchange: %w", err)
	}
	return in, db.update(func(txn *badger.Txn) error { return txn.Set(intentKey(in.ID), frame(b)) })
}

// ResolveExchange deletes an intent whose outcome is known.
func (db *DB) ResolveExchange(id string) error {
	return db.update(func(txn *badger.Txn) error { return txn.Delete(intentKey(id)) })
}

// PendingExchanges lists unresolved intents, oldest first.
func (db *DB) PendingExchanges() ([]Intent, error) {
	var out []Intent
	err := db.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("ei/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			var in Intent
			if err := iter.Item().Value(func(v []byte) error { return unmarshalFramed(v, &in) }); err != nil {
				return err
			}
			out = append(out, in)
		}
		return nil
	})
	return out, err
}

// OrphanIntent turns an unresolved intent into a lost_exchange orphan in one
// transaction. itemID is "" when Plaid's answer was never seen. detail says
// what happened; it must not hold secrets.
func (db *DB) OrphanIntent(in Intent, itemID, detail string) error {
	now := db.now().UTC()
	o := Orphan{
		Kind: OrphanLostExchange, Tenant: in.Tenant, User: in.User, ItemID: itemID, LinkTokenHash: in.LinkTokenHash,
		IntentID: in.ID, Detail: detail, FirstSeen: in.CreatedAt, LastSeen: now, Count: 1,
	}
	b, err := encodeOrphan(o)
	if err != nil {
		return err
	}
	return db.update(func(txn *badger.Txn) error {
		if err := txn.Set(orphanKey(o), b); err != nil {
			return err
		}
		return txn.Delete(intentKey(in.ID))
	})
}

// RecordOrphan records an orphan once per tenant and item (or intent): a
// repeat is a cheap read that changes nothing. It reports whether the orphan
// is new.
func (db *DB) RecordOrphan(o Orphan) (bool, error) { return db.recordOrphan(o, syncNow) }

func (db *DB) recordOrphan(o Orphan, m syncMode) (bool, error) {
	w, err := db.orphanWrite(o)
	if err != nil {
		return false, err
	}
	// A repeat is found by a read alone. Deferred (syncLater), the update
	// below finds it as cheaply (a transaction that writes nothing commits
	// nothing and waits for no round), and every Badger transaction waits
	// for the commits in flight, the intake's included, so one is enough
	// (issue 12). On a full disk the read still answers a repeat.
	if m != syncLater || db.checkSpace() != nil {
		var known bool
		if err := db.view(func(txn *badger.Txn) (err error) { known, err = w.seen(txn); return err }); err != nil || known {
			return false, err
		}
	}
	fresh := false
	err = db.updateThen(func(txn *badger.Txn) (err error) { fresh, err = w.put(txn); return err }, m)
	return fresh, err
}

// orphanWrite is an orphan record ready to write in a transaction: once
// per tenant and item (or intent).
type orphanWrite struct {
	key, rec []byte
}

// orphanWrite checks o and encodes it as first seen now.
func (db *DB) orphanWrite(o Orphan) (orphanWrite, error) {
	if o.Tenant == "" || (o.ItemID == "" && o.IntentID == "") || strings.ContainsRune(o.Tenant+o.ItemID, 0) {
		return orphanWrite{}, errors.New("store: record orphan: tenant and item_id or intent_id are required")
	}
	now := db.now().UTC()
	o.FirstSeen, o.LastSeen, o.Count = now, now, 1
	rec, err := encodeOrphan(o)
	if err != nil {
		return orphanWrite{}, fmt.Errorf("store: record orphan: %w", err)
	}
	return orphanWrite{orphanKey(o), rec}, nil
}

// seen reports whether the orphan is recorded.
func (w orphanWrite) seen(txn *badger.Txn) (bool, error) {
	_, err := txn.Get(w.key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// put records the orphan unless it is, and reports whether it was new.
func (w orphanWrite) put(txn *badger.Txn) (fresh bool, err error) {
	if known, err := w.seen(txn); err != nil || known {
		return false, err
	}
	return true, txn.Set(w.key, w.rec)
}

// Orphans lists every recorded orphan, oldest first.
func (db *DB) Orphans() ([]Orphan, error) {
	var out []Orphan
	err := db.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("o/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			var o Orphan
			if err := iter.Item().Value(func(v []byte) error { return unmarshalFramed(v, &o) }); err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out, err
}

// ForgetOrphan removes an orphan the admin has dealt with; ErrNotFound when
// tenant has no orphan with that item or intent id.
func (db *DB) ForgetOrphan(tenant, itemOrIntent string) error {
	return db.update(func(txn *badger.Txn) error {
		found := false
		for _, k := range [][]byte{
			orphanKey(Orphan{Tenant: tenant, ItemID: itemOrIntent}),
			orphanKey(Orphan{Tenant: tenant, IntentID: itemOrIntent}),
		} {
			_, err := txn.Get(k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			found = true
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		if !found {
			return fmt.Errorf("%w: orphan %s/%s", ErrNotFound, tenant, itemOrIntent)
		}
		return nil
	})
}
