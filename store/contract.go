package store

import (
	"context"
	"time"
)

// Backend is the contract of a store backend: what the proxy, the CLI and
// the operator's tools call. *DB (Badger, the embedded default) and *pg.DB
// (PostgreSQL, shared by several replicas) both satisfy it, with the same
// semantics and the same sentinel errors (ErrNotFound, ErrDuplicate,
// ErrUnavailable, …); the conformance suite in store/storetest checks both.
// It is spelled here once: proxy.Store is this interface, and storetest
// runs against it.
type Backend interface {
	SaveItem(it Item, accessToken string) error
	Item(tenant, itemID string) (Item, error)
	Items(tenant, user string) ([]Item, error)
	ItemOwner(itemID string) (tenant, user string, err error)
	AccessToken(tenant, user, itemID string) (string, error)
	SetAccessToken(tenant, user, itemID, accessToken string) error
	UpdateItem(tenant, itemID string, fn func(*Item) error) (Item, error)
	DeleteItem(tenant, itemID string) error
	Rotate() (int, error)
	KeyStatus() error

	SaveLinkSession(ls LinkSession) error
	LinkSessionByToken(linkToken string) (LinkSession, error)
	LinkSessions(tenant, user string, max int) ([]LinkSession, error)

	BeginExchange(in Intent) (Intent, error)
	ResolveExchange(id string) error
	PendingExchanges() ([]Intent, error)
	OrphanIntent(in Intent, itemID, detail string) error
	RecordOrphan(o Orphan) (bool, error)
	Orphans() ([]Orphan, error)
	ForgetOrphan(tenant, itemOrIntent string) error

	Enqueue(ctx context.Context, e Entry) (id string, duplicate bool, err error)
	LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (Entry, bool, error)
	Extend(id string, lease uint64, d time.Duration) error
	Release(id string, lease uint64) error
	Complete(id string, lease uint64) error
	Retry(id string, lease uint64, next time.Time, reason string) error
	DeadLetter(id string, lease uint64, reason string) error
	DeadLetters(limit int) ([]Entry, error)
	Replay(id string, vouch bool) error
	QueueLen() (int, error)

	ProbeStore() error
	ProbeKey() error
	Close() error
}

var _ Backend = (*DB)(nil)
