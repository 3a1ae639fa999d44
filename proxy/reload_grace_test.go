package proxy

import (
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// ReloadGrace covers the longer of a request's body read (ReadTimeout) and
// a webhook attempt (PlaidTimeout + 10s), plus the margin.
// TestReloadKeepsOldPluginsForBodyReads (cmd/safeclose, integration) shows
// what the old one-second grace broke.
func TestReloadGrace(t *testing.T) {
	db, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tests := []struct {
		name        string
		read, plaid time.Duration
		want        time.Duration
	}{
		{"defaults", 0, 0, 26 * time.Second},
		{"long read timeout", time.Minute, 0, time.Minute + time.Second},
		{"short plaid timeout", 0, time.Second, 12 * time.Second},
		{"read timeout under the webhook attempt", 20 * time.Second, 0, 26 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, err := New(Options{Store: db, Tenants: shutdownTenants(t), ReadTimeout: tt.read, PlaidTimeout: tt.plaid})
			if err != nil {
				t.Fatal(err)
			}
			if got := srv.ReloadGrace(); got != tt.want {
				t.Errorf("ReloadGrace(ReadTimeout %v, PlaidTimeout %v) = %v, want %v", tt.read, tt.plaid, got, tt.want)
			}
		})
	}
}
