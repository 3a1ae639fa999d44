// Package storetest is the conformance suite every store backend passes
// (the Badger store in package store, PostgreSQL in store/pg), modelled on
// perkeep's storagetest: Run exercises the contract the proxy relies on, so
// the rest of the code does not need to know which backend it has.
package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// Store is the contract under test, store.Backend: what the proxy and cmd
// call.
type Store = store.Backend

// Config is what a test asks of a backend when it opens it.
type Config struct {
	Keyring *store.Keyring   // nil: no key
	Now     func() time.Time // never nil
}

// Opener opens one backend's data, fresh for the test that asked; calling
// it again (after Close) opens the same data.
type Opener func(t *testing.T, cfg Config) Store

// NewOpener returns an Opener on new, empty data for test t.
type NewOpener func(t *testing.T) Opener

// Clock is a settable test clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now reads the clock.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newClock() *Clock { return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// keyBytes is the test key of id.
func keyBytes(id string) []byte { b := sha256.Sum256([]byte("storetest key " + id)); return b[:] }

func keyring(t *testing.T, primary string, ids ...string) *store.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range append([]string{primary}, ids...) {
		keys[id] = keyBytes(id)
	}
	kr, err := store.NewKeyring(primary, keys)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// Run runs the whole suite; each test gets its own data from newOpener.
func Run(t *testing.T, newOpener NewOpener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Items", testItems},
		{"Rotate", testRotate},
		{"KeyMismatch", testKeyMismatch},
		{"LinkSessions", testLinkSessions},
		{"IntentsOrphans", testIntentsOrphans},
		{"QueueDedupe", testQueueDedupe},
		{"QueueDedupeWhileWaiting", testQueueDedupeWhileWaiting},
		{"QueueLease", testQueueLease},
		{"QueueAuthenticated", testQueueAuthenticated},
		{"QueueKeyStates", testQueueKeyStates},
		{"QueueRetryDeadLetterReplay", testQueueRetryDead},
		{"QueueLeaseExpiry", testQueueLeaseExpiry},
		{"QueueTenantTurns", testQueueTurns},
		{"QueueConcurrentLeasers", testQueueConcurrent},
		{"QueueConcurrentIntake", testQueueConcurrentIntake},
		{"Probes", testProbes},
		{"KVBasics", testKVBasics},
		{"KVMaxSizeReopen", testKVMaxSizeReopen},
		{"KVQuota", testKVQuota},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newOpener(t))
		})
	}
	t.Run("KVTransfer", func(t *testing.T) { // two stores: from one into the other
		t.Parallel()
		testKVTransfer(t, newOpener(t), newOpener(t))
	})
}

func openWith(t *testing.T, open Opener, kr *store.Keyring, c *Clock) Store {
	t.Helper()
	s := open(t, Config{Keyring: kr, Now: c.Now})
	t.Cleanup(func() { s.Close() })
	return s
}

func item(tenant, user, id string, at time.Time) store.Item {
	return store.Item{Tenant: tenant, User: user, ItemID: id, State: store.StateOK, CreatedAt: at, UpdatedAt: at}
}

func entry(tenant, body string) store.Entry {
	return store.Entry{Tenant: tenant, Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body)),
		Headers: []store.Header{{Name: "Plaid-Verification", Value: "jwt"}}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want %v", what, err, want)
	}
}

func fmtItems(its []store.Item) string {
	s := ""
	for _, it := range its {
		s += fmt.Sprintf("%s/%s/%s ", it.Tenant, it.User, it.ItemID)
	}
	return s
}
