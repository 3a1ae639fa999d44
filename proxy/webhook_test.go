package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	plaid "github.com/plaid/plaid-go/v29/plaid"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/internal/stdwebhooks"
	"github.com/safeclose/safeclose/store"
)

// itemState reads an item's state through the public status route.
func (e *testEnv) itemState(host, key, itemID string) string {
	e.t.Helper()
	r := e.do("GET", host, pathStatus, key, nil)
	items, _ := r.json(e.t)["items"].([]any)
	for _, it := range items {
		m := it.(map[string]any)
		if m["item_id"] == itemID {
			s, _ := m["state"].(string)
			return s
		}
	}
	return ""
}

func TestWebhookLoginRequiredThenUpdateModeRepairs(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)

	// Plaid puts the item in ITEM_LOGIN_REQUIRED and sends ITEM/ERROR.
	at, err := e.db.AccessToken("t1", "alice", itemID)
	if err != nil {
		t.Fatal(err)
	}
	pc := newPlaidClient(PlaidOptions{BaseURL: e.simTS.URL, ClientID: simClientID, Secret: simSecret}, http.DefaultClient)
	if _, _, err := pc.api.PlaidApi.SandboxItemResetLogin(t.Context()).
		SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatalf("sandbox/item/reset_login: %v", err)
	}
	eventually(t, "state login_required", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "login_required" })

	// The app asks for an update-mode token and the user completes Link.
	r = e.do("POST", "t1.test", pathLinkToken, "alice-key", []byte(`{"item_id":"`+itemID+`"}`))
	if r.status != 200 || r.json(t)["mode"] != "update" {
		t.Fatalf("update-mode link-token = %d %s", r.status, r.body)
	}
	tok, _ := r.json(t)["link_token"].(string)
	if _, err := e.sim.CompleteLink(tok, "ins_109508", "user_good"); err != nil {
		t.Fatalf("CompleteLink(update): %v", err)
	}
	eventually(t, "state ok", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "ok" })
}

func TestWebhookEventsMoveItemState(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	send := func(code string, extra map[string]any) {
		body := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID, "environment": "sandbox"}
		for k, v := range extra {
			body[k] = v
		}
		if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
			t.Fatalf("SendWebhook %s: %v", code, err)
		}
	}
	send("PENDING_EXPIRATION", map[string]any{"consent_expiration_time": "2030-01-15T13:25:17Z"})
	eventually(t, "pending_expiration", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "pending_expiration" })
	send("USER_PERMISSION_REVOKED", map[string]any{"error": map[string]any{"error_code": "USER_PERMISSION_REVOKED"}})
	eventually(t, "revoked", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "revoked" })
	// Revoked is terminal: a late LOGIN_REPAIRED does not resurrect it.
	send("LOGIN_REPAIRED", nil)
	time.Sleep(200 * time.Millisecond)
	eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	if s := e.itemState("t1.test", "alice-key", itemID); s != "revoked" {
		t.Errorf("state after late LOGIN_REPAIRED = %q, want revoked", s)
	}
}

func TestForgedWebhooksRejectedNothingStored(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	base, _ := e.db.QueueLen()
	faults := []struct {
		name string
		f    plaidsim.Fault
	}{
		{"wrong key", plaidsim.FaultWrongKey},
		{"wrong alg", plaidsim.FaultWrongAlg},
		{"stale iat", plaidsim.FaultStaleIAT},
		{"tampered body", plaidsim.FaultTamperedBody},
		{"unknown kid", plaidsim.FaultUnknownKid},
	}
	for i, tt := range faults {
		body := map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": itemID,
			"initial_update_complete": true, "historical_update_complete": i%2 == 0, "environment": "sandbox"}
		_ = e.sim.SendWebhook(t.Context(), itemID, body, tt.f) // delivery fails by design
	}
	// Every forged delivery got a 4xx (a stale iat 503) and nothing reached the queue.
	var got []int
	for _, d := range e.sim.Deliveries() {
		got = append(got, d.Status)
	}
	for i, st := range got[len(got)-len(faults):] {
		if faults[i].f == plaidsim.FaultUnknownKid && st == 503 {
			continue // Issue 9.8: the unknown-kid lookup may be throttled: 503, never stored
		}
		if faults[i].f == plaidsim.FaultStaleIAT {
			// Plaid's signature with a stale iat: the host clock is the
			// likelier fault, so 503 (Plaid retries), never stored.
			if st != 503 {
				t.Errorf("stale-iat webhook answered %d, want 503 (all: %v)", st, got)
			}
			continue
		}
		if st != 400 && st != 401 {
			t.Errorf("forged webhook answered %d, want 400/401 (all: %v)", st, got)
		}
	}
	if n, _ := e.db.QueueLen(); n != base {
		t.Errorf("queue grew from %d to %d after forged webhooks", base, n)
	}
	// Garbage headers straight at the route.
	for _, h := range []string{"", "x", "a.b.c", "eyJhbGciOiJub25lIn0.e30."} {
		r := e.do("POST", "127.0.0.1", pathWebhook, "", []byte(`{"item_id":"x"}`), "Plaid-Verification", h)
		if r.status != 400 && r.status != 401 {
			t.Errorf("header %q answered %d %s", h, r.status, r.body)
		}
	}
	if n, _ := e.db.QueueLen(); n != base {
		t.Errorf("queue grew after garbage headers")
	}
}

// Plaid webhooks carry no event id, and some codes repeat byte for byte as
// new events: every TRANSACTIONS SYNC_UPDATES_AVAILABLE of an item whose
// history is in. A copy that arrives after the first copy was delivered is
// forwarded again, signed, under its own webhook-id (a 48-hour dedupe on
// the body hash dropped it, and the app stopped hearing of new
// transactions). A copy that arrives while the first waits for its
// delivery is a duplicate: TestWebhookDuplicateAnswersID, and the stores'
// QueueDedupeWhileWaiting.
func TestRepeatedWebhookForwardedAgainSigned(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var mu sync.Mutex
	ids := map[string]int{}
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		err := stdwebhooks.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			r.Header.Get("webhook-signature"), b, time.Now(), 5*time.Minute)
		if err != nil {
			t.Errorf("forwarded webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		ids[r.Header.Get("webhook-id")]++
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)
	e := startEnv(t, envConfig{forward: []Destination{{Name: "app", URL: recv.URL, Secret: secret}}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)

	body := map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": itemID,
		"initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox"}
	forwarded := func() int { mu.Lock(); defer mu.Unlock(); return len(bodies) }
	for n := 1; n <= 2; n++ {
		if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
			t.Fatalf("SendWebhook %d: %v", n, err)
		}
		eventually(t, fmt.Sprintf("forward %d", n), func() bool { return forwarded() >= n })
		eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || len(bodies) != 2 {
		t.Fatalf("two deliveries of one body, the second after the first was forwarded: forwarded %d times with ids %v; want 2 under 2 ids", len(bodies), ids)
	}
	for _, b := range bodies {
		if !strings.Contains(b, `"SYNC_UPDATES_AVAILABLE"`) || !strings.Contains(b, itemID) {
			t.Errorf("forwarded body = %s", b)
		}
	}
	var ok200 int
	for _, d := range e.sim.Deliveries() {
		if d.Status == 200 {
			ok200++
		}
	}
	if ok200 != 2 {
		t.Errorf("Plaid's deliveries answered 200: %d, want 2", ok200)
	}
}

func TestWebhookStoreDownAnswers503(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_DISCONNECT", "item_id": itemID, "environment": "sandbox", "reason": "INSTITUTION_MIGRATION"}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_ = e.sim.SendWebhook(ctx, itemID, body, plaidsim.FaultNone)
	ds := e.sim.Deliveries()
	if len(ds) == 0 || ds[len(ds)-1].Status != 503 {
		t.Fatalf("store down: last delivery status = %v, want 503", ds)
	}
}

// Out of order: Plaid sent PENDING_EXPIRATION before the item needed
// re-login, but its delivery (a retry) arrives after ITEM/ERROR. The
// warning overwrote login_required, which the status route no longer
// re-reads, so the app stopped prompting a re-login the item still needed.
// A pending_* warning never replaces login_required; only a state Plaid
// confirms (/item/get) leaves it.
func TestWebhookLatePendingExpirationKeepsLoginRequired(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	at, err := e.db.AccessToken("t1", "alice", itemID)
	if err != nil {
		t.Fatal(err)
	}
	pc := newPlaidClient(PlaidOptions{BaseURL: e.simTS.URL, ClientID: simClientID, Secret: simSecret}, http.DefaultClient)
	if _, _, err := pc.api.PlaidApi.SandboxItemResetLogin(t.Context()).
		SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatalf("sandbox/item/reset_login: %v", err)
	}
	eventually(t, "state login_required", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "login_required" })
	for _, code := range []string{"PENDING_EXPIRATION", "PENDING_DISCONNECT"} {
		body := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID, "environment": "sandbox",
			"consent_expiration_time": "2030-01-15T13:25:17Z", "reason": "INSTITUTION_MIGRATION"}
		if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
			t.Fatalf("SendWebhook %s: %v", code, err)
		}
		eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
		if s := e.itemState("t1.test", "alice-key", itemID); s != "login_required" {
			t.Errorf("state after a late %s = %q, want login_required", code, s)
		}
	}
}

// While the keyring does not match the data (the right key id, the wrong
// bytes), a webhook is answered 503 and nothing is queued: a record
// authenticated under those bytes would fail its check once the keyring is
// fixed (store/entry_auth.go). Plaid sends it again later.
func TestWebhookKeyMismatchAnswers503(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, err := store.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Options{Dir: dir, Keyring: good})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	var opened *store.DB
	e := startEnv(t, envConfig{dir: dir, webhookOpt: WebhookOptions{Workers: -1},
		store: func(t testing.TB, _ *store.Keyring) Store {
			wrong, err := store.NewKeyring(good.PrimaryID(), map[string][]byte{good.PrimaryID(): make([]byte, 32)})
			if err != nil {
				t.Fatal(err)
			}
			if opened, err = store.Open(store.Options{Dir: dir, Keyring: wrong}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { opened.Close() })
			return opened
		}})
	if !errors.Is(opened.KeyStatus(), store.ErrKeyMismatch) {
		t.Fatalf("KeyStatus = %v, want ErrKeyMismatch", opened.KeyStatus())
	}
	w := signWebhooks(t, e.sim, 1)[0]
	req, err := http.NewRequestWithContext(t.Context(), "POST", e.base+pathWebhook, strings.NewReader(string(w.body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "t1.test"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Plaid-Verification", w.jwt)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || !strings.Contains(string(b), "sealing_key_unavailable") {
		t.Fatalf("key mismatch: webhook answered %d %s, want 503 sealing_key_unavailable", res.StatusCode, b)
	}
	if n, err := opened.QueueLen(); err != nil || n != 0 {
		t.Fatalf("QueueLen = %d, %v; want nothing queued", n, err)
	}
}

// A proxy started without its keys holds the authenticated entries it
// cannot check (store/entry_auth.go): not forwarded, not dead-lettered,
// and counted in safeclose_webhook_queue_held_total so an operator sees it.
func TestWebhookHeldWithoutKeysIsCounted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kr, err := store.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Options{Dir: dir, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-x","environment":"sandbox"}`)
	if _, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body), ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e := startEnv(t, envConfig{dir: dir, noKey: true})
	held := func() float64 {
		mfs, err := e.srv.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "safeclose_webhook_queue_held_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("safeclose_webhook_queue_held_total not registered")
		return 0
	}
	eventually(t, "the entry held", func() bool { return held() >= 1 })
	if n, err := e.db.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen = %d, %v; want the held entry still queued", n, err)
	}
	if dl, err := e.db.DeadLetters(10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v; want none", dl, err)
	}
}
