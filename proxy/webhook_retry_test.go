package proxy

import (
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// With the defaults, a tenant's app may be down for hours (a deploy gone
// wrong, a night) before its events are dead-lettered: the retries are
// spread over ~8 h, Backoff doubling up to MaxBackoff. Before, 8 attempts
// capped at 5 min gave up after about 2 minutes.
func TestDefaultRetriesOutlastAnOutageOfHours(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := New(Options{Store: db, Tenants: shutdownTenants(t)})
	if err != nil {
		t.Fatal(err)
	}
	w := srv.opts.Webhooks
	for a, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if d := w.retryDelay(a); d != want {
			t.Errorf("delay after attempt %d = %v, want %v", a+1, d, want)
		}
	}
	if d := w.retryDelay(w.MaxAttempts); d != w.MaxBackoff {
		t.Errorf("late delay = %v, want the cap %v", d, w.MaxBackoff)
	}
	// How long a destination can stay down before an entry's last attempt
	// fails: the delays between its MaxAttempts attempts.
	var win time.Duration
	for a := range w.MaxAttempts - 1 {
		win += w.retryDelay(a)
	}
	if win < 6*time.Hour || win > 12*time.Hour {
		t.Errorf("default retry window = %v, want 6–12 h", win)
	}
}
