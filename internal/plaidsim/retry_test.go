package plaidsim

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"
)

// Webhook delivery follows Plaid's retry rules (non-200 ⇒ retry after 30 s,
// then ×4; Retry-After honoured), time-scaled, and re-signs every attempt.

func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		send   string // "fire_webhook" (async first attempt) or "SendWebhook" (synchronous first attempt)
		delays []time.Duration
		scale  float64
	}{
		{"fire_webhook, Plaid's schedule", "fire_webhook", nil, 0.0001},
		{"SendWebhook, Plaid's schedule", "SendWebhook", nil, 0.0001},
		{"fire_webhook, long delays", "fire_webhook", []time.Duration{100 * time.Second, 400 * time.Second}, 0.001},
		{"SendWebhook, long delays", "SendWebhook", []time.Duration{100 * time.Second, 400 * time.Second}, 0.001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, Options{TimeScale: tt.scale, RetryDelays: tt.delays, Now: time.Now})
			rcv := newReceiver(t, func(n int, _ http.ResponseWriter) int {
				if n <= 2 {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			})
			at, itemID := e.linkItem(t, rcv.url)
			switch tt.send {
			case "fire_webhook":
				if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "SYNC_UPDATES_AVAILABLE")).Execute(); err != nil {
					t.Fatal(err)
				}
			case "SendWebhook":
				body := map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": itemID,
					"initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox"}
				if err := e.sim.SendWebhook(ctx, itemID, body, FaultNone); err == nil {
					t.Fatal("SendWebhook reported success for a 500")
				}
			}
			// Wait until the emulator has logged the third attempt's answer
			// (closing earlier would cancel that request in flight).
			waitDeliveries(t, e.sim, "3 logged attempts", func(ds []Delivery) bool { return len(ds) >= 3 })
			if err := e.sim.Close(); err != nil { // waits for the delivery goroutine
				t.Fatal(err)
			}
			hooks := rcv.all()
			if len(hooks) != 3 {
				t.Fatalf("%d attempts, want 3 (500, 500, 200)", len(hooks))
			}
			var jwts []string
			for i, h := range hooks {
				jwt := h.Header.Get("Plaid-Verification")
				if slices.Contains(jwts, jwt) {
					t.Errorf("attempt %d reuses an earlier attempt's JWT", i+1)
				}
				jwts = append(jwts, jwt)
				if !bytes.Equal(h.Body, hooks[0].Body) {
					t.Errorf("attempt %d body differs:\n%s\n%s", i+1, h.Body, hooks[0].Body)
				}
				// Fresh iat at each attempt: it verifies now, and is not before the attempt was made.
				if step, err := verifyWebhook(ctx, emulatorKeys(e.api), jwt, h.Body, time.Now()); step != stepOK {
					t.Errorf("attempt %d: verifier step %q: %v", i+1, step, err)
				}
				if iat := jwtPayload(t, jwt).IAT; iat < h.At.Add(-time.Second).Unix() || iat > h.At.Unix()+1 {
					t.Errorf("attempt %d: iat %d, received at %d", i+1, iat, h.At.Unix())
				}
			}
			delays := tt.delays
			if delays == nil {
				delays = []time.Duration{30 * time.Second, 2 * time.Minute}
			}
			for i := 1; i < 3; i++ {
				min := time.Duration(float64(delays[i-1]) * tt.scale)
				if gap := hooks[i].At.Sub(hooks[i-1].At); gap < min {
					t.Errorf("attempt %d came %v after attempt %d, want ≥ %v (delay %v scaled by %v)", i+1, gap, i, min, delays[i-1], tt.scale)
				}
			}
			var attempts, statuses []int
			for _, d := range e.sim.Deliveries() {
				attempts, statuses = append(attempts, d.Attempt), append(statuses, d.Status)
				if d.Verification == "" || d.Body != string(hooks[0].Body) || d.ItemID != itemID || d.URL != rcv.url {
					t.Errorf("delivery log entry = %+v", d)
				}
			}
			if !slices.Equal(attempts, []int{1, 2, 3}) || !slices.Equal(statuses, []int{500, 500, 200}) {
				t.Errorf("delivery log attempts %v statuses %v", attempts, statuses)
			}
		})
	}
}

// A 429 with Retry-After is retried after Retry-After, not after the
// schedule's delay (here 10 h scaled to 3.6 s; Retry-After 1 s scales to 0.1 ms).
func TestWebhookRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{TimeScale: 0.0001, RetryDelays: []time.Duration{10 * time.Hour}})
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	at, _ := e.linkItem(t, rcv.url)
	if _, _, err := e.api.SandboxItemFireWebhook(context.Background()).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "DEFAULT_UPDATE")).Execute(); err != nil {
		t.Fatal(err)
	}
	hooks := rcv.waitWithin(t, 2*time.Second, "the retry after Retry-After", func(hs []hook) bool { return len(hs) >= 2 })
	if hooks[0].Status != 429 || hooks[1].Status != 200 || !bytes.Equal(hooks[0].Body, hooks[1].Body) {
		t.Errorf("attempts = %d %d", hooks[0].Status, hooks[1].Status)
	}
}

// When every attempt fails, delivery stops at the end of the schedule.
func TestWebhookRetriesGiveUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{TimeScale: 1, RetryDelays: []time.Duration{time.Millisecond, time.Millisecond}})
	rcv := newReceiver(t, func(int, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	at, _ := e.linkItem(t, rcv.url)
	if _, _, err := e.api.SandboxItemResetLogin(context.Background()).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatal(err)
	}
	waitDeliveries(t, e.sim, "3 logged attempts", func(ds []Delivery) bool { return len(ds) >= 3 })
	if err := e.sim.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.all()); n != 3 {
		t.Errorf("%d attempts, want 3 (1 + len(RetryDelays))", n)
	}
	var attempts []int
	for _, d := range e.sim.Deliveries() {
		attempts = append(attempts, d.Attempt)
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("attempts %v", attempts)
	}
	// The item's last_webhook records only successful deliveries.
	g, _, err := e.api.ItemGet(context.Background()).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	if err != nil || g.Status.Get().LastWebhook.Get() != nil {
		t.Errorf("status.last_webhook after failed deliveries = %+v %v", g.Status.Get(), err)
	}
}
