package proxy

import (
	"context"
	"time"

	"github.com/safeclose/safeclose/store"
)

// Store is what the proxy needs from a backend: *store.DB (Badger, the
// embedded default) and *pg.DB (PostgreSQL, shared by several replicas)
// both satisfy it, with the same semantics and the same sentinel errors
// (store.ErrNotFound, store.ErrDuplicate, store.ErrUnavailable, …); the
// conformance suite in store/storetest checks both.
type Store interface {
	SaveItem(it store.Item, accessToken string) error
	Item(tenant, itemID string) (store.Item, error)
	Items(tenant, user string) ([]store.Item, error)
	ItemOwner(itemID string) (tenant, user string, err error)
	AccessToken(tenant, user, itemID string) (string, error)
	UpdateItem(tenant, itemID string, fn func(*store.Item) error) (store.Item, error)
	DeleteItem(tenant, itemID string) error

	SaveLinkSession(ls store.LinkSession) error
	LinkSessionByToken(linkToken string) (store.LinkSession, error)
	LinkSessions(tenant, user string, max int) ([]store.LinkSession, error)

	BeginExchange(in store.Intent) (store.Intent, error)
	ResolveExchange(id string) error
	PendingExchanges() ([]store.Intent, error)
	OrphanIntent(in store.Intent, itemID, detail string) error
	RecordOrphan(o store.Orphan) (bool, error)
	Orphans() ([]store.Orphan, error)

	Enqueue(ctx context.Context, e store.Entry) (id string, duplicate bool, err error)
	LeaseNext(owner string, d time.Duration, after string, allow func(tenant string) bool) (store.Entry, bool, error)
	Extend(id string, lease uint64, d time.Duration) error
	Release(id string, lease uint64) error
	Complete(id string, lease uint64) error
	Retry(id string, lease uint64, next time.Time, reason string) error
	DeadLetter(id string, lease uint64, reason string) error
	QueueLen() (int, error)

	ProbeStore() error
	ProbeKey() error
}

var _ Store = (*store.DB)(nil)
