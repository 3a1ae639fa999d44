package proxy

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

func pgStore(dsn string) func(t testing.TB, kr *store.Keyring) Store {
	return func(t testing.TB, kr *store.Keyring) Store {
		db, err := pg.Open(context.Background(), pg.Options{DSN: dsn, Keyring: kr, MaxConns: 8, OpTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

// Issue 11.1: the proxy works unchanged on PostgreSQL: exchange, status,
// a verified webhook that moves the item's state, and its duplicate.
func TestPostgresExchangeAndWebhooks(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{store: pgStore(pgtest.Database(t))})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	if itemID == "" {
		t.Fatalf("exchange on PostgreSQL = %d %s", r.status, r.body)
	}
	if s := e.itemState("t1.test", "alice-key", itemID); s != "ok" {
		t.Fatalf("state after exchange = %q, want ok", s)
	}
	body := map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "item_id": itemID,
		"environment": "sandbox", "consent_expiration_time": "2030-01-15T13:25:17Z"}
	if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultDuplicate); err != nil {
		t.Fatalf("SendWebhook: %v", err)
	}
	eventually(t, "pending_expiration", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "pending_expiration" })
}

// Issue 11.4: PostgreSQL stopped mid-run: webhooks answer 503 (so Plaid
// retries), reads that need the store 503, /readyz is not ready; all of it
// recovers by itself once the server is started again.
func TestPostgresDownAnswers503ThenRecovers(t *testing.T) {
	c := pgtest.NewCluster(t)
	e := startEnv(t, envConfig{store: pgStore(c.DSN), webhookOpt: WebhookOptions{Workers: -1}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	if itemID == "" {
		t.Fatalf("exchange = %d %s", r.status, r.body)
	}
	send := func(code string) int {
		body := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID, "environment": "sandbox"}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_ = e.sim.SendWebhook(ctx, itemID, body, plaidsim.FaultNone)
		ds := e.sim.Deliveries()
		if len(ds) == 0 {
			return 0
		}
		return ds[len(ds)-1].Status
	}

	c.Stop()
	if st := send("LOGIN_REPAIRED"); st != http.StatusServiceUnavailable {
		t.Errorf("webhook with PostgreSQL down = %d, want 503", st)
	}
	if r := e.do("GET", "t1.test", pathStatus, "alice-key", nil); r.status != http.StatusServiceUnavailable || r.errCode(t) != "store_unavailable" {
		t.Errorf("status with PostgreSQL down = %d %s, want 503 store_unavailable", r.status, r.body)
	}
	if st, rz, body := getReadyz(t, e, ""); st != http.StatusServiceUnavailable || rz.Ready {
		t.Errorf("/readyz with PostgreSQL down = %d %s, want 503 not ready", st, body)
	}

	c.Start()
	ok := false
	for range 30 { // bounded: the pool reconnects on the next request
		if send("NEW_ACCOUNTS_AVAILABLE") == http.StatusOK {
			ok = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !ok {
		t.Fatal("webhooks did not recover after PostgreSQL came back")
	}
	if r := e.do("GET", "t1.test", pathStatus, "alice-key", nil); r.status != http.StatusOK {
		t.Errorf("status after recovery = %d %s", r.status, r.body)
	}
	if st, _, body := getReadyz(t, e, ""); st != http.StatusOK {
		t.Errorf("/readyz after recovery = %d %s", st, body)
	}
}

// A replica that starts while another is inside an exchange does not take
// that exchange's intent for one a dead process left: on a shared store an
// intent is reported as an orphan only once it is older than any exchange
// can be (intentGrace), as the intent of a replica that died an hour ago
// is. Before, the second replica's start turned the live exchange's intent
// into a lost_exchange orphan ("the process stopped inside an exchange"),
// which stayed after the exchange succeeded: every rolling restart under
// traffic raised false orphan alarms.
func TestPostgresReplicaStartKeepsLiveIntents(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	inside, release := make(chan struct{}), make(chan struct{})
	a := startEnv(t, envConfig{store: pgStore(dsn), exchangeFault: func(stage string) error {
		if stage == faultExchanged {
			close(inside)
			<-release
		}
		return nil
	}})
	lt := a.linkToken("t1.test", "alice-key", "")
	pub, err := a.sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan resp, 1)
	go func() { done <- a.do("POST", "t1.test", pathExchange, "alice-key", a.exchangeBody(pub, lt)) }()
	<-inside
	dead, err := a.srv.db.BeginExchange(store.Intent{Tenant: "t1", User: "bob", CreatedAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	b := startEnv(t, envConfig{store: pgStore(dsn)}) // a second replica starts now
	close(release)
	if r := <-done; r.status != http.StatusOK || r.json(t)["persisted"] != true {
		t.Fatalf("exchange across the other replica's start = %d %s", r.status, r.body)
	}
	os, err := b.srv.db.Orphans()
	if err != nil || len(os) != 1 || os[0].IntentID != dead.ID {
		t.Fatalf("orphans after the exchange = %+v, %v; want only the dead replica's intent %s", os, err, dead.ID)
	}
}

// BenchmarkWebhookIntakePostgres is BenchmarkWebhookIntake with the queue on
// PostgreSQL (issue 11: its goal is ≥ 0.8× the Badger rate of the same run).
// It needs SAFECLOSE_TEST_PG_DSN (scripts/with-postgres.sh sets it).
func BenchmarkWebhookIntakePostgres(b *testing.B) {
	if os.Getenv("SAFECLOSE_TEST_PG_DSN") == "" {
		b.Skip("SAFECLOSE_TEST_PG_DSN is not set (run under scripts/with-postgres.sh)")
	}
	benchIntake(b, envConfig{store: pgStore(pgtest.Database(b)), webhookOpt: WebhookOptions{Workers: 1, Poll: time.Hour}})
}

// BenchmarkWebhookEndToEndPostgres is BenchmarkWebhookEndToEnd with the queue
// on PostgreSQL (4 workers forwarding while 32 senders post).
func BenchmarkWebhookEndToEndPostgres(b *testing.B) {
	if os.Getenv("SAFECLOSE_TEST_PG_DSN") == "" {
		b.Skip("SAFECLOSE_TEST_PG_DSN is not set (run under scripts/with-postgres.sh)")
	}
	benchEndToEnd(b, envConfig{store: pgStore(pgtest.Database(b))})
}
