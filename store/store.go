package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/safeclose/safeclose/store/internal/seal"
)

// Errors. Messages never contain secrets.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrNoKey       = errors.New("store: no sealing key configured")
	ErrKeyMismatch = errors.New("store: sealing key does not match the data")
	ErrDuplicate   = errors.New("store: duplicate")
	ErrClosed      = errors.New("store: closed")
	ErrStaleLease  = errors.New("store: lease is no longer held")
	ErrCorrupt     = errors.New("store: record failed its integrity check")
)

// ItemState is an item's health as Safeclose knows it.
type ItemState string

// Item states.
const (
	StateOK                ItemState = "ok"
	StateLoginRequired     ItemState = "login_required"
	StatePendingExpiration ItemState = "pending_expiration"
	StatePendingDisconnect ItemState = "pending_disconnect"
	StateRevoked           ItemState = "revoked"
)

// Item is a linked Plaid item. It never carries the access token.
type Item struct {
	Tenant           string    `json:"tenant"`
	User             string    `json:"user"`
	ItemID           string    `json:"item_id"`
	InstitutionID    string    `json:"institution_id,omitempty"`
	State            ItemState `json:"state"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	LastEvent        string    `json:"last_event,omitempty"`
	LastEventAt      time.Time `json:"last_event_at,omitzero"`
	ConsentExpiresAt time.Time `json:"consent_expires_at,omitzero"`
	// CheckedAt is when Plaid's /item/get last confirmed State, by the
	// clock of the process that wrote it; zero if never. It versions the
	// confirmations: one is written only if none was since its item was
	// read (proxy applyEvent).
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// itemRecord is the stored form: the item plus its sealed token.
type itemRecord struct {
	Item
	Sealed []byte `json:"sealed"`
}

// Options configure Open. Zero values are documented per field.
type Options struct {
	Dir       string           // data directory; ignored when InMemory
	InMemory  bool             // tests only: nothing on disk
	Keyring   *Keyring         // nil means no key: SaveItem answers ErrNoKey, everything else works
	Logger    *slog.Logger     // nil means discard; Badger's own logs go here too
	DedupeTTL time.Duration    // zero means DefaultDedupeTTL (48h)
	MaxBatch  int              // group-commit batch cap; zero means 256
	Now       func() time.Time // nil means time.Now
	// MemTableSize is Badger's memtable size; zero means 16 MiB.
	MemTableSize int64
	// MinFreeBytes is the free space kept in reserve: writes are refused
	// with ErrUnavailable below it (space.go). Zero means 10 memtables
	// (160 MiB by default); negative disables the check.
	MinFreeBytes int64
}

// DB is the store. It is safe for concurrent use.
type DB struct {
	bdb     *badger.DB
	kr      *Keyring
	keyErr  error       // nil, ErrNoKey or ErrKeyMismatch, fixed at Open
	qg      *QueueGuard // queue records' checks (entry_auth.go)
	log     *slog.Logger
	now     func() time.Time
	ttl     time.Duration
	max     int
	reqs    chan *enqueueReq
	outReqs chan *outcomeReq // outcomes for the outcome writer (outcomes.go)
	outDone chan struct{}    // closed when the outcome writer has stopped
	// outcomeTxns counts the outcome writer's committed transactions.
	outcomeTxns atomic.Uint64
	stop        chan struct{}
	done        chan struct{}
	closeMu     sync.RWMutex
	closed      bool
	leaseMu     sync.Mutex
	qi          *qindex         // the queue's in-memory index and leases (qindex.go)
	gs          *groupSync      // fsync rounds (durable.go); nil when in memory
	oldSynced   map[string]bool // rotated log files synced since (syncFiles)
	watch       *dirWatch       // changes in dir since the last listing (syncFiles); nil: list every round
	listings    uint64          // times syncFiles listed dir (0: never, so the first round lists)
	roundDone   func()          // tests: run at the end of each successful round
	ids         idGen
	dir         string
	reserve     int64        // MinFreeBytes; 0 means no check
	lowSpace    atomic.Bool  // logged once per transition
	spaceOK     atomic.Int64 // unix nanos until which plenty of space is assumed (space.go)
	kvLocks     TenantLocks  // serialise each tenant's plugin KV writes (kv.go)
}

// DefaultDedupeTTL is how long a webhook body's dedupe marker is kept when
// Options leaves DedupeTTL zero; store/pg uses it too. A marker makes a
// copy a duplicate only while its entry waits for its delivery (queue.go,
// waiting).
const DefaultDedupeTTL = 48 * time.Hour

// Open opens (or creates) the store.
func Open(o Options) (*DB, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DedupeTTL == 0 {
		o.DedupeTTL = DefaultDedupeTTL
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 256
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 16 << 20
	}
	switch {
	case o.InMemory || o.MinFreeBytes < 0:
		o.MinFreeBytes = 0
	case o.MinFreeBytes == 0:
		o.MinFreeBytes = defaultReserve(o.MemTableSize)
	}
	bo := badger.DefaultOptions(o.Dir)
	if o.InMemory {
		bo = badger.DefaultOptions("").WithInMemory(true)
	}
	// Durable, and sized for a small machine: 16 MiB memtables, small caches.
	// Every write is synced before it returns, but by the store in shared
	// rounds (durable.go), not by Badger once per transaction.
	bo = bo.WithSyncWrites(false).
		WithLogger(badgerLogger{o.Logger}).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(3).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false)
	bo = bo.WithValueThreshold(min(bo.ValueThreshold, o.MemTableSize/10)) // Badger: at most 15% of a memtable
	if !o.InMemory {
		if err := checkDir(o.Dir, bo, o.Logger); err != nil {
			return nil, err
		}
	}
	bdb, err := openBadger(bo)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
	}
	if !o.InMemory {
		if err := writeMarker(o.Dir); errors.Is(err, syscall.ENOSPC) {
			o.Logger.Warn("disk full: could not write the data directory marker; will retry at next start", "dir", o.Dir)
		} else if err != nil {
			bdb.Close()
			return nil, fmt.Errorf("store: open %s: marker: %w", o.Dir, err)
		}
	}
	db := &DB{
		bdb: bdb, kr: o.Keyring, log: o.Logger, now: o.Now, ttl: o.DedupeTTL, max: o.MaxBatch,
		reqs: make(chan *enqueueReq, 1024), stop: make(chan struct{}), done: make(chan struct{}),
		outReqs: make(chan *outcomeReq, OutcomeBatch), outDone: make(chan struct{}),
		dir: o.Dir, reserve: o.MinFreeBytes, qi: newQindex(),
	}
	db.qg = NewQueueGuard(o.Keyring)
	if !o.InMemory {
		db.gs, db.oldSynced = newGroupSync(db.syncFilesChecked), map[string]bool{}
		db.watch = newDirWatch(o.Dir) // before the first round, which lists dir anyway
	}
	if err := db.checkKeys(); err != nil {
		db.closeFailed()
		return nil, err
	}
	if err := db.loadQueue(); err != nil {
		db.closeFailed()
		return nil, fmt.Errorf("store: open %s: queue index: %w", o.Dir, err)
	}
	go db.committer()
	go db.outcomeWriter()
	return db, nil
}

// closeFailed releases what a failed Open acquired.
func (db *DB) closeFailed() {
	db.bdb.Close()
	if db.watch != nil {
		db.watch.close()
	}
}

// Close stops the committer and closes Badger. Calls after the first return ErrClosed.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return ErrClosed
	}
	db.closed = true
	db.closeMu.Unlock()
	close(db.stop)
	<-db.done
	<-db.outDone
	err := db.bdb.Close()
	if db.watch != nil {
		db.watch.close()
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping reports whether the store is usable: open, readable, and with free
// space above the reserve (else ErrUnavailable).
func (db *DB) Ping() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed || db.bdb.IsClosed() {
		return ErrClosed
	}
	if err := db.checkSpace(); err != nil {
		return err
	}
	return db.bdb.View(func(*badger.Txn) error { return nil })
}

// KeyStatus is nil when tokens can be sealed and opened, else ErrNoKey or
// ErrKeyMismatch (with the key id in the message).
func (db *DB) KeyStatus() error { return db.keyErr }

// HeldTotal counts the queue entries held since Open (entry_auth.go).
func (db *DB) HeldTotal() uint64 { return db.qg.HeldTotal() }

// checkKeys verifies every configured key against its canary and that every
// key id used by stored records is in the keyring.
func (db *DB) checkKeys() error {
	if db.kr == nil {
		db.keyErr = ErrNoKey
		return nil
	}
	err := db.bdb.Update(func(txn *badger.Txn) error {
		for id, k := range db.kr.keys {
			ck := []byte("kc/" + id)
			it, err := txn.Get(ck)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				if err := db.checkSpace(); err != nil {
					return err // a write on a full disk would kill the process (space.go)
				}
				rec, err := k.Seal([]byte("safeclose-canary"), ck)
				if err != nil {
					return err
				}
				if err := txn.Set(ck, rec); err != nil {
					return err
				}
			case err != nil:
				return err
			default:
				rec, err := it.ValueCopy(nil)
				if err != nil {
					return err
				}
				if _, err := k.Open(rec, ck); err != nil {
					db.qg.MarkBad(id)
					db.keyErr = fmt.Errorf("%w: key %q is not the key that sealed this data", ErrKeyMismatch, id)
					db.log.Error("sealing key mismatch: tokens cannot be stored or read with this key", "key_id", id)
				}
			}
		}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte("ku/")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			id := string(iter.Item().Key()[3:])
			if _, ok := db.kr.keys[id]; !ok && db.keyErr == nil {
				db.keyErr = fmt.Errorf("%w: stored tokens are sealed with key %q, which is not in the keyring", ErrKeyMismatch, id)
				db.log.Error("keyring lacks a key that sealed stored tokens", "key_id", id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return db.durable()
}

func (db *DB) view(fn func(*badger.Txn) error) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return ErrClosed
	}
	return db.bdb.View(fn)
}

func (db *DB) update(fn func(*badger.Txn) error) error { return db.updateThen(fn, syncNow) }

// writable is nil when the store takes writes: open, and with free space
// above the reserve; db.closeMu is held.
func (db *DB) writable() error {
	if db.closed {
		return ErrClosed
	}
	return db.checkSpace()
}

// updateThen runs fn in a transaction, retried on conflicts, and returns
// once the write is durable as m says (durable.go).
func (db *DB) updateThen(fn func(*badger.Txn) error, m syncMode) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return err
	}
	for range 10 {
		err := db.bdb.Update(fn)
		if err == nil {
			return db.durableMode(m)
		}
		if !errors.Is(err, badger.ErrConflict) {
			return noSpace(err)
		}
	}
	return fmt.Errorf("store: too many conflicts")
}

func itemKey(tenant, itemID string) []byte { return []byte("i/" + tenant + "\x00" + itemID) }
func userKey(tenant, user, itemID string) []byte {
	return []byte("u/" + tenant + "\x00" + user + "\x00" + itemID)
}
func tokenAAD(tenant, user, itemID string) []byte {
	return []byte("access_token/" + tenant + "/" + user + "/" + itemID)
}

// SaveItem seals accessToken under the primary key and stores the item with
// its indexes in one synced transaction.
func (db *DB) SaveItem(it Item, accessToken string) error {
	if db.keyErr != nil {
		return db.keyErr
	}
	if it.Tenant == "" || it.User == "" || it.ItemID == "" || strings.ContainsRune(it.Tenant+it.User+it.ItemID, 0) {
		return fmt.Errorf("store: save item: tenant, user and item_id are required")
	}
	sealed, err := db.kr.primary.Seal([]byte(accessToken), tokenAAD(it.Tenant, it.User, it.ItemID))
	if err != nil {
		return fmt.Errorf("store: save item: %w", err)
	}
	b, err := json.Marshal(itemRecord{Item: it, Sealed: sealed})
	if err != nil {
		return fmt.Errorf("store: save item: %w", err)
	}
	ik := itemKey(it.Tenant, it.ItemID)
	owner := []byte(it.Tenant + "\x00" + it.User)
	xk := ownerKey(it.ItemID)
	return db.update(func(txn *badger.Txn) error {
		if cur, err := db.owner(txn, it.ItemID); err == nil {
			if !bytes.Equal(cur, owner) {
				return fmt.Errorf("%w: item %s belongs to another owner", ErrDuplicate, it.ItemID)
			}
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		for _, kv := range [][2][]byte{
			{ik, db.kr.authenticate(ik, b)},
			{userKey(it.Tenant, it.User, it.ItemID), nil},
			{xk, db.kr.authenticate(xk, owner)},
			{[]byte("ku/" + db.kr.primary.ID), nil},
		} {
			if err := txn.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Items lists a user's items, oldest first. Tokens are not included.
func (db *DB) Items(tenant, user string) ([]Item, error) {
	var out []Item
	err := db.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte("u/" + tenant + "\x00" + user + "\x00")
		iter := txn.NewIterator(opts)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			itemID := string(iter.Item().Key()[len(opts.Prefix):])
			rec, _, err := db.getItem(txn, tenant, itemID)
			if errors.Is(err, ErrNotFound) {
				err = db.corrupt(ErrCorrupt, "user index", tenant, itemID)
			}
			if err != nil {
				return err
			}
			if rec.User != user {
				return db.corrupt(ErrCorrupt, "user index", tenant, itemID)
			}
			out = append(out, rec.Item)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// Item finds an item by id within a tenant.
func (db *DB) Item(tenant, itemID string) (Item, error) {
	var rec itemRecord
	err := db.view(func(txn *badger.Txn) (err error) {
		rec, _, err = db.getItem(txn, tenant, itemID)
		return err
	})
	return rec.Item, err
}

// AccessToken opens an item's token for its owner.
func (db *DB) AccessToken(tenant, user, itemID string) (string, error) {
	var rec itemRecord
	err := db.view(func(txn *badger.Txn) (err error) {
		rec, _, err = db.getItem(txn, tenant, itemID)
		return err
	})
	if err != nil {
		return "", err
	}
	if rec.User != user {
		return "", ErrNotFound
	}
	if db.kr == nil {
		return "", ErrNoKey
	}
	id, err := seal.KeyID(rec.Sealed)
	if err != nil {
		return "", fmt.Errorf("store: item %s: %w", itemID, err)
	}
	k := db.kr.keys[id]
	if k == nil {
		return "", fmt.Errorf("%w: item %s is sealed with key %q", ErrKeyMismatch, itemID, id)
	}
	pt, err := k.Open(rec.Sealed, tokenAAD(tenant, user, itemID))
	if err != nil {
		return "", fmt.Errorf("%w: item %s: %w", ErrKeyMismatch, itemID, err)
	}
	return string(pt), nil
}

// SetAccessToken seals a new token for an item user holds, in one synced
// transaction with the item as it is stored then: a state written since
// the caller last read the item is kept (SaveItem would write back the
// caller's copy). An item that is missing, or held by another user, is
// ErrNotFound.
func (db *DB) SetAccessToken(tenant, user, itemID, accessToken string) error {
	if db.keyErr != nil {
		return db.keyErr
	}
	sealed, err := db.kr.primary.Seal([]byte(accessToken), tokenAAD(tenant, user, itemID))
	if err != nil {
		return fmt.Errorf("store: set access token: %w", err)
	}
	return db.update(func(txn *badger.Txn) error {
		rec, _, err := db.getItem(txn, tenant, itemID)
		if err != nil {
			return err
		}
		if rec.User != user {
			return ErrNotFound
		}
		rec.Sealed = sealed
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		ik := itemKey(tenant, itemID)
		if err := txn.Set(ik, db.kr.authenticate(ik, b)); err != nil {
			return err
		}
		return txn.Set([]byte("ku/"+db.kr.primary.ID), nil)
	})
}

// UpdateItem applies fn to the item in one transaction. fn must not change
// Tenant, User or ItemID.
func (db *DB) UpdateItem(tenant, itemID string, fn func(*Item) error) (Item, error) {
	return db.updateItem(tenant, itemID, fn, syncNow)
}

func (db *DB) updateItem(tenant, itemID string, fn func(*Item) error, m syncMode) (Item, error) {
	var out Item
	if db.keyErr != nil {
		return out, db.keyErr // records are re-authenticated under the primary key
	}
	err := db.updateThen(func(txn *badger.Txn) error {
		rec, _, err := db.getItem(txn, tenant, itemID)
		if err != nil {
			return err
		}
		it := rec.Item
		if err := fn(&it); err != nil {
			return err
		}
		it.Tenant, it.User, it.ItemID = rec.Tenant, rec.User, rec.ItemID
		rec.Item = it
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		out = it
		ik := itemKey(tenant, itemID)
		if err := txn.Set(ik, db.kr.authenticate(ik, b)); err != nil {
			return err
		}
		return txn.Set([]byte("ku/"+db.kr.primary.ID), nil)
	}, m)
	return out, err
}

// DeleteItem removes an item and its indexes.
func (db *DB) DeleteItem(tenant, itemID string) error {
	return db.update(func(txn *badger.Txn) error {
		rec, _, err := db.getItem(txn, tenant, itemID)
		if err != nil {
			return err
		}
		for _, k := range [][]byte{itemKey(tenant, itemID), userKey(tenant, rec.User, itemID), []byte("x/" + itemID)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
