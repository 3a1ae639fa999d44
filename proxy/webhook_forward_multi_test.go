package proxy

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// A tenant with two destinations, one of them down (or a hostile receiver
// answering 500). Forwarding used to walk the destinations in order and
// stop at the first failure, with retries and the dead letter per event:
// a broken destination listed first kept the healthy one from ever
// receiving the event (a review of 2026-12-08). Every destination is now
// tried in each attempt (forwardAll).
func TestBrokenDestinationDoesNotStarveSibling(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var brokenHits, goodHits atomic.Int64
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		brokenHits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		goodHits.Add(1)
	}))
	t.Cleanup(good.Close)
	const attempts = 3
	e := startEnv(t, envConfig{
		forward: []Destination{
			{Name: "analytics", URL: broken.URL, Secret: secret}, // a secondary sink, down
			{Name: "app", URL: good.URL, Secret: secret},         // the tenant's app, healthy
		},
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: attempts, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	var dead []store.Entry
	eventually(t, "event dead-lettered", func() bool {
		dead, _ = e.db.DeadLetters(10)
		return len(dead) == 1
	})
	t.Logf("broken destination: %d posts; healthy destination: %d posts; dead letter: %q",
		brokenHits.Load(), goodHits.Load(), dead[0].LastError)
	if goodHits.Load() == 0 {
		t.Errorf("the healthy destination %q never received the event: the broken destination listed before it "+
			"made the whole event fail %d times and be dead-lettered", "app", attempts)
	}
}

// The mirror image: the healthy destination, first, used to get the same
// event (same webhook-id) once per attempt at the broken one. A retry now
// goes only to the destinations that failed (deliveries).
func TestRetryResendsOnlyToFailedDestinations(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var goodHits atomic.Int64
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(broken.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		goodHits.Add(1)
	}))
	t.Cleanup(good.Close)
	const attempts = 4
	e := startEnv(t, envConfig{
		forward: []Destination{
			{Name: "app", URL: good.URL, Secret: secret},
			{Name: "analytics", URL: broken.URL, Secret: secret},
		},
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: attempts, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	eventually(t, "event dead-lettered", func() bool {
		dead, _ := e.db.DeadLetters(10)
		return len(dead) == 1
	})
	if n := goodHits.Load(); n != 1 {
		t.Errorf("the healthy destination received one event %d times (once per attempt at the broken one); want 1", n)
	}
}

// One attempt's deadline (eventTimeout = PlaidTimeout + 10 s) covers the
// forwards, and each POST may take up to PlaidTimeout. Posted in turn,
// healthy destinations that each answer inside their own timeout could
// never all fit in one attempt. They are posted at once now. Here
// PlaidTimeout is 1 s (attempt budget 11 s) and 12 destinations each
// answer 200 in 0.95 s.
func TestSlowDestinationsForwardedAtOnce(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var hits [12]atomic.Int64
	mux := http.NewServeMux()
	var dests []Destination
	for i := range hits {
		path := "/d" + string(rune('a'+i))
		mux.HandleFunc(path, func(http.ResponseWriter, *http.Request) {
			time.Sleep(950 * time.Millisecond)
			hits[i].Add(1)
		})
		dests = append(dests, Destination{Name: "d" + string(rune('a'+i)), URL: "", Secret: secret})
	}
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	for i := range dests {
		dests[i].URL = app.URL + "/" + dests[i].Name
	}
	e := startEnv(t, envConfig{
		forward:    dests,
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
		optsFn:     func(o *Options) { o.PlaidTimeout = time.Second },
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	var dead []store.Entry
	for i := 0; i < 100; i++ { // up to 20 s
		if dead, _ = e.db.DeadLetters(10); len(dead) == 1 {
			break
		}
		if q, _ := e.db.QueueLen(); q == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(dead) == 1 {
		var got []int64
		for i := range hits {
			got = append(got, hits[i].Load())
		}
		t.Errorf("12 destinations each answering 200 in 0.95 s (inside their 1 s timeout): the event was dead-lettered (%q); deliveries per destination %v",
			dead[0].LastError, got)
	}
}
