//go:build integration

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// Issue 11.5: three `safeclose serve` on one PostgreSQL. An exchange on A is
// seen by B; a webhook delivered to C moves the state A reports; the same
// body delivered to B and C at once is accepted once and a duplicate once;
// a stream of signed webhooks round-robin while replicas are SIGKILLed and
// restarted: every acknowledged webhook is forwarded, each as one event.
func TestReplicasShareOnePostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	sim, err := plaidsim.New(plaidsim.Options{ClientID: "rep-client", Secret: "rep-secret"})
	if err != nil {
		t.Fatal(err)
	}
	plaid := httptest.NewServer(sim)
	defer plaid.Close()
	defer sim.Close()

	var mu sync.Mutex
	idsByItem := map[string]map[string]bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev struct {
			ItemID string `json:"item_id"`
		}
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		if idsByItem[ev.ItemID] == nil {
			idsByItem[ev.ItemID] = map[string]bool{}
		}
		idsByItem[ev.ItemID][r.Header.Get("webhook-id")] = true
		mu.Unlock()
	}))
	defer app.Close()

	secret := make([]byte, 32)
	rand.Read(secret)
	key := make([]byte, 32)
	rand.Read(key)
	apiKey := "replica-key"
	sum := sha256.Sum256([]byte(apiKey))
	env := append(os.Environ(),
		"SAFECLOSE_KEYS=k1:"+base64.StdEncoding.EncodeToString(key),
		"SAFECLOSE_PG_DSN="+dsn,
		"REP_CLIENT_ID=rep-client", "REP_SECRET=rep-secret",
		"REP_FWD_SECRET=whsec_"+base64.StdEncoding.EncodeToString(secret),
		"LISTEN_FDS=1")
	type replica struct {
		addr string
		ln   *os.File
		cfg  string
		cmd  *exec.Cmd
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	reps := make([]*replica, 3)
	for i := range reps {
		addr, f := activationListener(t)
		cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
keys: env:SAFECLOSE_KEYS
store: {backend: postgres, dsn: env:SAFECLOSE_PG_DSN, max_conns: 8}
webhooks: {workers: 2, max_attempts: 50, backoff: 50ms, max_backoff: 200ms, lease: 2s}
tenants:
  - name: rep
    hosts: [127.0.0.1]
    plaid:
      env: %s
      client_id: env:REP_CLIENT_ID
      secret: env:REP_SECRET
      client_name: Replicas
      products: [transactions]
      country_codes: [US]
      language: en
    auth:
      api_keys: [{sha256: "%s", user: alice}]
    forward:
      - {name: app, url: %s, secret: env:REP_FWD_SECRET}
`, addr, filepath.Join(dir, fmt.Sprint("data", i)), plaid.URL, hex.EncodeToString(sum[:]), app.URL)
		p := filepath.Join(dir, fmt.Sprintf("rep%d.yaml", i))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		reps[i] = &replica{addr: addr, ln: f, cfg: p}
	}
	start := func(r *replica) {
		r.cmd = exec.Command(bin, "serve", "-config", r.cfg)
		r.cmd.Env = env
		r.cmd.ExtraFiles = []*os.File{r.ln}
		w := &lockedWriter{mu: &logMu, w: &logs}
		r.cmd.Stdout, r.cmd.Stderr = w, w
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range reps {
		start(r)
	}
	defer func() {
		for _, r := range reps {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			_ = r.cmd.Wait()
		}
		if t.Failed() {
			logMu.Lock()
			tail := logs.String()
			logMu.Unlock()
			if len(tail) > 4000 {
				tail = tail[len(tail)-4000:]
			}
			t.Logf("log tail:\n%s", tail)
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(r *replica, method, path string, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+r.addr+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	webhook := func(r *replica, body []byte) (int, string) {
		jwt, err := sim.Sign(body)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		req, _ := http.NewRequest("POST", "http://"+r.addr+"/api/webhooks/plaid", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Plaid-Verification", jwt)
		res, err := client.Do(req)
		if err != nil {
			return 0, ""
		}
		defer res.Body.Close()
		var m struct{ Status string }
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m.Status
	}

	// Exchange on A, status on B.
	st, m := call(reps[0], "POST", "/api/plaid/link-token", "")
	if st != 200 {
		t.Fatalf("link-token on A = %d %v", st, m)
	}
	lt, _ := m["link_token"].(string)
	pub, err := sim.CompleteLink(lt, "ins_109508", "user_good")
	if err != nil {
		t.Fatal(err)
	}
	st, m = call(reps[0], "POST", "/api/plaid/exchange", `{"public_token":"`+pub+`","link_token":"`+lt+`"}`)
	itemID, _ := m["item_id"].(string)
	if st != 200 || m["persisted"] != true {
		t.Fatalf("exchange on A = %d %v", st, m)
	}
	state := func(r *replica) string {
		_, m := call(r, "GET", "/api/plaid/status", "")
		items, _ := m["items"].([]any)
		for _, it := range items {
			if x, _ := it.(map[string]any); x["item_id"] == itemID {
				s, _ := x["state"].(string)
				return s
			}
		}
		return ""
	}
	if s := state(reps[1]); s != "ok" {
		t.Fatalf("status on B after exchange on A: state %q, want ok", s)
	}

	// A webhook delivered to C moves the state A reports.
	body, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "item_id": itemID,
		"consent_expiration_time": "2030-01-15T13:25:17Z", "environment": "sandbox"})
	if st, res := webhook(reps[2], body); st != 200 || res != "accepted" {
		t.Fatalf("webhook to C = %d %s", st, res)
	}
	ok := false
	for range 100 {
		if state(reps[0]) == "pending_expiration" {
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("state on A after the webhook to C = %q, want pending_expiration", state(reps[0]))
	}

	// The same body to B and C at once: one accepted, one duplicate.
	dup, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
		"item_id": "dup-item", "new_webhook_url": "https://example.com/h", "error": nil, "environment": "sandbox"})
	results := make([]string, 2)
	var wg sync.WaitGroup
	for i, r := range reps[1:] {
		wg.Go(func() { _, results[i] = webhook(r, dup) })
	}
	wg.Wait()
	if !(results[0] == "accepted" && results[1] == "duplicate" || results[0] == "duplicate" && results[1] == "accepted") {
		t.Fatalf("same body to B and C = %v, want one accepted and one duplicate", results)
	}

	// A stream round-robin while replicas die and come back.
	const total = 300
	var acked sync.Map
	var ackCount atomic.Int64
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	var senders sync.WaitGroup
	for range 6 {
		senders.Go(func() {
			for i := range next {
				item := fmt.Sprintf("rep-item-%04d", i)
				b, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
					"item_id": item, "new_webhook_url": "https://example.com/h", "error": nil, "environment": "sandbox"})
				for attempt := 0; attempt < 300; attempt++ {
					if st, _ := webhook(reps[(i+attempt)%3], b); st == 200 {
						acked.Store(item, true)
						ackCount.Add(1)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	for k := range 3 {
		time.Sleep(time.Duration(300+100*k) * time.Millisecond)
		r := reps[k]
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
		start(r)
	}
	senders.Wait()
	if n := ackCount.Load(); n != total {
		t.Errorf("%d of %d webhooks acknowledged", n, total)
	}
	var missing []string
	for range 600 { // bounded wait: leases of killed replicas end after 2s
		missing = missing[:0]
		mu.Lock()
		acked.Range(func(k, _ any) bool {
			if len(idsByItem[k.(string)]) == 0 {
				missing = append(missing, k.(string))
			}
			return true
		})
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged webhooks never forwarded (e.g. %v)", len(missing), missing[:min(5, len(missing))])
	}
	mu.Lock()
	defer mu.Unlock()
	for item, ids := range idsByItem {
		if len(ids) != 1 {
			t.Errorf("event for %s forwarded as %d distinct events %v, want one", item, len(ids), ids)
		}
	}
}
