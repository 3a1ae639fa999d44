package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// itemGetGate stands between the proxies and the emulator: its /item/get
// answers with the item's login state set by the test, and one answer may
// be held back (Plaid answered, the replica has not yet read it: a slow
// network, a GC pause, a SIGSTOPped process).
type itemGetGate struct {
	mu            sync.Mutex
	loginRequired bool
	hold          chan struct{} // the next answer waits for it to close
	held          chan struct{} // told when an answer is being held
}

func newItemGetGate(t *testing.T, simURL string) (*itemGetGate, string) {
	u, err := url.Parse(simURL)
	if err != nil {
		t.Fatal(err)
	}
	g := &itemGetGate{held: make(chan struct{}, 1)}
	rp := httputil.NewSingleHostReverseProxy(u)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/item/get" {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		g.mu.Lock()
		lr, hold := g.loginRequired, g.hold
		g.hold = nil
		g.mu.Unlock()
		if it, ok := m["item"].(map[string]any); ok {
			it["error"] = nil
			if lr {
				it["error"] = map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "m", "display_message": nil}
			}
		}
		if hold != nil {
			g.held <- struct{}{}
			<-hold
		}
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(m)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(ts.Close)
	return g, ts.URL
}

func (g *itemGetGate) set(loginRequired bool, hold chan struct{}) {
	g.mu.Lock()
	g.loginRequired, g.hold = loginRequired, hold
	g.mu.Unlock()
}

// Two replicas confirm one item's state with /item/get for two events at
// once (each replica's per-tenant worker limit is its own, so they do),
// and the answer of the older call reaches its replica last: the newer
// confirmation stands. Before, the late replica wrote what Plaid said
// before the user repaired the item, and the item stayed login_required
// (or, the other way round, ok while Plaid needed a re-login) until the
// next event.
func TestPostgresReplicasConfirmInOrder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	sim, simTS := newSim(t)
	gate, gateURL := newItemGetGate(t, simTS.URL)
	cfg := envConfig{sim: sim, plaidURL: gateURL, store: pgStore(dsn), webhookOpt: WebhookOptions{Workers: 1}}
	a := startEnv(t, cfg)
	startEnv(t, cfg) // a second replica, one worker each
	r := a.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	if itemID == "" {
		t.Fatalf("exchange = %d %s", r.status, r.body)
	}
	db := a.srv.db
	send := func(code string, extra map[string]any) {
		body := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID, "environment": "sandbox"}
		for k, v := range extra {
			body[k] = v
		}
		if err := sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
			t.Fatalf("SendWebhook %s: %v", code, err)
		}
	}
	item := func() store.Item {
		it, err := db.Item("t1", itemID)
		if err != nil {
			t.Fatal(err)
		}
		return it
	}

	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	gate.set(true, release) // Plaid: login required; that answer is held
	send("ERROR", map[string]any{"error": map[string]any{"error_code": "ITEM_LOGIN_REQUIRED"}})
	<-gate.held
	gate.set(false, nil) // the user repairs the item; the other replica confirms it
	send("LOGIN_REPAIRED", nil)
	eventually(t, "LOGIN_REPAIRED processed", func() bool { return item().LastEvent == "ITEM/LOGIN_REPAIRED" })
	close(release) // the old answer arrives
	eventually(t, "queue drained", func() bool { n, err := db.QueueLen(); return err == nil && n == 0 })
	if it := item(); it.State != store.StateOK {
		t.Fatalf("state after a repair confirmed last and an older answer read last = %q, want ok", it.State)
	}
}
