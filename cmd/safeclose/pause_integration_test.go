//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// A replica frozen (SIGSTOP) while it forwards an event, for longer than
// its lease, then thawed (SIGCONT): the other replica takes the entry when
// the lease ends and delivers it; the thawed replica's late outcome is
// refused (stale lease) and changes nothing. The queue ends empty with no
// dead letter, the app saw one event (one webhook-id; delivered twice, as
// at-least-once allows), and the thawed replica serves again.
func TestReplicaPausedPastItsLease(t *testing.T) {
	dsn := pgtest.Database(t)
	dir := t.TempDir()
	sim, err := plaidsim.New(plaidsim.Options{ClientID: "pause-client", Secret: "pause-secret"})
	if err != nil {
		t.Fatal(err)
	}
	plaid := httptest.NewServer(sim)
	t.Cleanup(plaid.Close)
	t.Cleanup(func() { _ = sim.Close() })

	var mu sync.Mutex
	byID := map[string]int{}
	arrived := make(chan struct{}, 16)
	hold := make(chan struct{}) // the first delivery is answered once it closes
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		byID[r.Header.Get("webhook-id")]++
		first := len(byID) == 1 && byID[r.Header.Get("webhook-id")] == 1
		mu.Unlock()
		arrived <- struct{}{}
		if first {
			<-hold
		}
	}))
	t.Cleanup(sink.Close)

	secret := make([]byte, 32)
	rand.Read(secret)
	key := make([]byte, 32)
	rand.Read(key)
	env := []string{
		"SAFECLOSE_KEYS=k1:" + base64.StdEncoding.EncodeToString(key),
		"SAFECLOSE_PG_DSN=" + dsn,
		"P_CLIENT_ID=pause-client", "P_SECRET=pause-secret",
		"P_FWD_SECRET=whsec_" + base64.StdEncoding.EncodeToString(secret),
	}
	start := func(name string) *serveProc {
		sock := listenSocket(t)
		cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
keys: env:SAFECLOSE_KEYS
store: {backend: postgres, dsn: env:SAFECLOSE_PG_DSN, max_conns: 4}
webhooks: {workers: 1, max_attempts: 50, backoff: 50ms, max_backoff: 200ms, lease: 1s}
tenants:
  - name: pause
    hosts: [127.0.0.1]
    plaid:
      env: %s
      client_id: env:P_CLIENT_ID
      secret: env:P_SECRET
      client_name: Pause
      products: [transactions]
      country_codes: [US]
      language: en
    auth:
      api_keys: [{sha256: "%064x", user: alice}]
    forward:
      - {name: app, url: %s, secret: env:P_FWD_SECRET}
`, sock.Addr, filepath.Join(dir, "data"+name), plaid.URL, 0, sink.URL)
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return startServe(t, p, procOpts{Name: "replica " + name, Socket: sock, Env: env})
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}

	a := start("A")
	body, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE",
		"item_id": "paused-item", "initial_update_complete": true, "historical_update_complete": false, "environment": "sandbox"})
	jwt, err := sim.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", a.URL()+"/api/webhooks/plaid", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Plaid-Verification", jwt)
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("webhook to A = %d", res.StatusCode)
	}
	wait("A's delivery")
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) }) // before its stop
	b := start("B")
	wait("B's delivery after A's lease ended")

	db, err := pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b.waitFor("B's completion", func() bool { n, err := db.QueueLen(); return err == nil && n == 0 })

	release() // A's delivery is answered while A is stopped
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	a.waitFor("A's late outcome refused", func() bool { return a.Logged("webhook outcome not recorded") })
	if !a.Logged("lease is no longer held") {
		t.Errorf("A's late outcome not refused as a stale lease:\n%s", a.Tail(20))
	}
	time.Sleep(500 * time.Millisecond) // let anything A would still write land
	if n, err := db.QueueLen(); err != nil || n != 0 {
		t.Errorf("queue after A thawed = %d, %v; want empty", n, err)
	}
	if dl, err := db.DeadLetters(10); err != nil || len(dl) != 0 {
		t.Errorf("dead letters = %+v, %v; want none", dl, err)
	}
	mu.Lock()
	if len(byID) != 1 {
		t.Errorf("app saw %d events %v, want one", len(byID), byID)
	}
	mu.Unlock()
	res, err = http.Get("http://" + a.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatalf("A after SIGCONT: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("A /readyz after SIGCONT = %d", res.StatusCode)
	}
}
