package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// deliveriesEnv is a proxy with two destinations for tenant t1: "app"
// (healthy) and "analytics" (answers 503 while failing is set). No workers:
// the tests call forwardAll themselves.
func deliveriesEnv(t *testing.T) (e *testEnv, tn *tenant, appHits *atomic.Int64, failing *atomic.Bool) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	appHits, failing = new(atomic.Int64), new(atomic.Bool)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { appHits.Add(1) }))
	t.Cleanup(app.Close)
	an := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(an.Close)
	e = startEnv(t, envConfig{
		forward: []Destination{
			{Name: "app", URL: app.URL, Secret: secret},
			{Name: "analytics", URL: an.URL, Secret: secret},
		},
		webhookOpt: WebhookOptions{Workers: -1},
	})
	tn = e.srv.table.Load().tenants["t1"]
	if tn == nil || len(tn.Forward) != 2 {
		t.Fatalf("tenant t1 = %+v", tn)
	}
	return e, tn, appHits, failing
}

// The memory of delivered destinations lasts deliveryMemory: a retry after
// that sends to every destination again (a review of 2026-12-08 found the
// age checked only when the map was full).
func TestDeliveryMemoryExpires(t *testing.T) {
	e, tn, appHits, _ := deliveriesEnv(t)
	ent := store.Entry{ID: "01REVIEW3OLD", Tenant: "t1", Attempts: 5}
	e.srv.delivered.add(ent.ID, "app", e.srv.now().Add(-deliveryMemory-time.Hour))
	if err := e.srv.forwardAll(context.Background(), tn, tn.Forward, ent, store.Item{}, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := appHits.Load(); n != 1 {
		t.Errorf("app was delivered to %v ago (past deliveryMemory = %v); the retry sent it %d posts, want 1: the memory did not expire",
			deliveryMemory+time.Hour, deliveryMemory, n)
	}
}

// A replayed entry (its attempts reset to 0) goes to every destination,
// even in a process that remembers delivering an earlier attempt of it:
// on PostgreSQL another replica may have written its dead letter, so this
// process's memory was never cleared (a review of 2026-12-08).
func TestReplayedEntrySentToEveryDestination(t *testing.T) {
	e, tn, appHits, failing := deliveriesEnv(t)
	ent := store.Entry{ID: "01REVIEW3REPLAY", Tenant: "t1"}
	failing.Store(true)
	// Attempt 1 here: app 200, analytics 503 -> retried.
	if err := e.srv.forwardAll(context.Background(), tn, tn.Forward, ent, store.Item{}, []byte(`{}`)); err == nil {
		t.Fatal("analytics failing: want an error")
	}
	// Attempts 2..N on another replica, dead-lettered there; the operator
	// fixes analytics and replays (attempts reset to 0); this process
	// leases the replayed entry.
	failing.Store(false)
	ent.Attempts = 0
	if err := e.srv.forwardAll(context.Background(), tn, tn.Forward, ent, store.Item{}, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := appHits.Load(); n != 2 {
		t.Errorf("replayed entry: app got %d posts in all, want 2 (a replay sends to every destination again)", n)
	}
}
