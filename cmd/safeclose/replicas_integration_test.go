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
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// Issue 11: three `safeclose serve` on one PostgreSQL. An exchange on A is
// seen by B; the emulator's reset_login webhook (ITEM/ERROR
// ITEM_LOGIN_REQUIRED, delivered by the emulator to the item's webhook URL,
// which is replica C) moves the state A reports; the same body delivered to
// B and C at once is accepted once and a duplicate once; 1000 signed
// webhooks round-robin while replicas are SIGKILLed and restarted: every
// acknowledged webhook is forwarded, each as one event (one distinct
// webhook-id), and every item stays on every replica.
func TestReplicasShareOnePostgres(t *testing.T) {
	dsn := pgtest.Database(t)
	dir := t.TempDir()
	sim, err := plaidsim.New(plaidsim.Options{ClientID: "rep-client", Secret: "rep-secret"})
	if err != nil {
		t.Fatal(err)
	}
	plaid := httptest.NewServer(sim)
	t.Cleanup(plaid.Close)
	t.Cleanup(func() { _ = sim.Close() }) // stops the emulator's deliveries before plaid closes
	app := &forwardSink{byItem: map[string]map[string]int{}, itemByID: map[string]string{}}
	sink := httptest.NewServer(app)
	t.Cleanup(sink.Close) // after the replicas stop

	secret := make([]byte, 32)
	rand.Read(secret)
	key := make([]byte, 32)
	rand.Read(key)
	apiKey := "replica-key"
	sum := sha256.Sum256([]byte(apiKey))
	env := []string{
		"SAFECLOSE_KEYS=k1:" + base64.StdEncoding.EncodeToString(key),
		"SAFECLOSE_PG_DSN=" + dsn,
		"REP_CLIENT_ID=rep-client", "REP_SECRET=rep-secret",
		"REP_FWD_SECRET=whsec_" + base64.StdEncoding.EncodeToString(secret),
	}
	const workers = 2 // webhook workers per replica
	names := []string{"A", "B", "C"}
	socks := make([]*socket, len(names))
	for i := range socks {
		socks[i] = listenSocket(t)
	}
	// Every replica asks Plaid to send item webhooks to C.
	hookURL := "http://" + socks[2].Addr + "/api/webhooks/plaid"
	reps := make([]*serveProc, len(names))
	for i, name := range names {
		cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
keys: env:SAFECLOSE_KEYS
store: {backend: postgres, dsn: env:SAFECLOSE_PG_DSN, max_conns: 8}
webhooks: {workers: %d, max_attempts: 50, backoff: 50ms, max_backoff: 200ms, lease: 2s}
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
      webhook_url: %s
    auth:
      api_keys: [{sha256: "%s", user: alice}]
    forward:
      - {name: app, url: %s, secret: env:REP_FWD_SECRET}
`, socks[i].Addr, filepath.Join(dir, "data"+name), workers, plaid.URL, hookURL, hex.EncodeToString(sum[:]), sink.URL)
		p := filepath.Join(dir, "rep"+name+".yaml")
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		reps[i] = startServe(t, p, procOpts{Name: "replica " + name, Socket: socks[i], Env: env})
	}
	a, b, c := reps[0], reps[1], reps[2]

	client := &http.Client{Timeout: 10 * time.Second}
	call := func(r *serveProc, method, path string, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, r.URL()+path, strings.NewReader(body))
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
	exchange := func(r *serveProc, institution string) string {
		t.Helper()
		st, m := call(r, "POST", "/api/plaid/link-token", "")
		if st != 200 {
			t.Fatalf("link-token on %s = %d %v", r.opts.Name, st, m)
		}
		lt, _ := m["link_token"].(string)
		pub, err := sim.CompleteLink(lt, institution, "user_good")
		if err != nil {
			t.Fatal(err)
		}
		st, m = call(r, "POST", "/api/plaid/exchange", `{"public_token":"`+pub+`","link_token":"`+lt+`"}`)
		id, _ := m["item_id"].(string)
		if st != 200 || m["persisted"] != true || id == "" {
			t.Fatalf("exchange on %s = %d %v", r.opts.Name, st, m)
		}
		return id
	}
	states := func(r *serveProc) map[string]string {
		t.Helper()
		st, m := call(r, "GET", "/api/plaid/status", "")
		if st != 200 {
			t.Fatalf("status on %s = %d %v", r.opts.Name, st, m)
		}
		out := map[string]string{}
		items, _ := m["items"].([]any)
		for _, it := range items {
			x, _ := it.(map[string]any)
			id, _ := x["item_id"].(string)
			s, _ := x["state"].(string)
			out[id] = s
		}
		return out
	}
	webhook := func(r *serveProc, body []byte) (int, string) {
		jwt, err := sim.Sign(body) // signed per attempt, as Plaid does
		if err != nil {
			return -1, err.Error()
		}
		req, _ := http.NewRequest("POST", r.URL()+"/api/webhooks/plaid", bytes.NewReader(body))
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
	itemID := exchange(a, "ins_109508")
	if s := states(b)[itemID]; s != "ok" {
		t.Fatalf("status on B after exchange on A: state %q, want ok", s)
	}

	// The emulator's reset_login fires ITEM/ERROR ITEM_LOGIN_REQUIRED to the
	// item's webhook (C); A then reports login_required.
	res, err := client.Post(plaid.URL+"/__emu/item/reset_login", "application/json", strings.NewReader(`{"item_id":"`+itemID+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("emulator reset_login = %d", res.StatusCode)
	}
	a.waitFor("login_required on A after the emulator's webhook to C", func() bool { return states(a)[itemID] == "login_required" })
	var toC bool
	for _, d := range sim.Deliveries() {
		if d.ItemID == itemID && d.URL == hookURL && d.Status == 200 && strings.Contains(d.Body, "ITEM_LOGIN_REQUIRED") {
			toC = true
		}
	}
	if !toC {
		t.Fatalf("no ITEM_LOGIN_REQUIRED delivery to C (%s) acknowledged in the emulator's log %+v", hookURL, sim.Deliveries())
	}

	// One item exchanged on each replica (one user has one item per
	// institution): none may be lost by the kills.
	items := map[string]string{itemID: "login_required", exchange(b, "ins_109509"): "ok", exchange(c, "ins_109510"): "ok"}

	// The same body to B and C at once: one accepted, the other a duplicate
	// while the first copy waits for its delivery. Both replicas' workers
	// run here, and a copy that arrives after the first copy's delivery has
	// begun is a new event (RATIONALE.md "Why dedupe on the body hash"), so
	// two accepted copies under two ids are right too; which copy wins the
	// marker at once is store/pg's TestEnqueueReplicasDedupe, without
	// workers.
	dup, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
		"item_id": "dup-item", "new_webhook_url": "https://example.com/h", "error": nil, "environment": "sandbox"})
	results := make([]string, 2)
	var wg sync.WaitGroup
	for i, r := range []*serveProc{b, c} {
		wg.Go(func() { _, results[i] = webhook(r, dup) })
	}
	wg.Wait()
	answered := func(r string) bool { return r == "accepted" || r == "duplicate" }
	if !answered(results[0]) || !answered(results[1]) || results[0] != "accepted" && results[1] != "accepted" {
		t.Fatalf("same body to B and C = %v, want one accepted and the other accepted or a duplicate", results)
	}

	// 1000 webhooks round-robin while replicas die and come back.
	const total = 1000
	st := streamWebhooks(t, total, reps, webhook)
	kills := []*serveProc{a, b, c, a}
	var ackedAtKill []int64
	for k, r := range kills {
		threshold := int64((k + 1) * total / (len(kills) + 1))
		for range 12000 { // 10ms steps: at most 2 minutes
			if st.acked.Load() >= threshold || st.finished() {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		ackedAtKill = append(ackedAtKill, st.acked.Load())
		r.Kill()
		t.Logf("SIGKILL %d (%s) after %d acknowledged", k+1, r.opts.Name, ackedAtKill[k])
		r.Start()
	}
	select {
	case <-st.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("senders did not finish in 3 minutes")
	}
	if last := ackedAtKill[len(ackedAtKill)-1]; last >= total {
		t.Fatalf("the stream ended before the last kill (acked at kills: %v); the test proves nothing", ackedAtKill)
	}
	if n := st.acked.Load(); n != total {
		t.Fatalf("%d of %d webhooks acknowledged (%d answered 4xx); the senders retry 5xx and connection errors", n, total, st.rejected.Load())
	}

	// Every acknowledged webhook forwarded (bounded wait: leases of killed
	// replicas end after 2s).
	var missing []string
	for range 1200 {
		missing = app.missing(total)
		if len(missing) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged webhooks never forwarded (e.g. %v)", len(missing), missing[:min(5, len(missing))])
	}
	// One event per webhook, except for a body sent again after a kill cut
	// its answer: the copy is a duplicate while the first copy waits for
	// its delivery, and a new event (its own webhook-id) once that delivery
	// has begun, as it must be for Plaid's events that repeat byte for byte
	// (RATIONALE.md "Why dedupe on the body hash").
	ids, deliveries, multi := app.stream(total, st.sends)
	for _, m := range multi {
		t.Error(m)
	}
	if ids < total || int64(ids) > int64(total)+st.retries.Load() {
		t.Errorf("%d distinct webhook-ids forwarded for %d webhooks with %d sends again, want %d to %d", ids, total, st.retries.Load(), total, int64(total)+st.retries.Load())
	}
	// Forwarding is at least once: a replica killed between a forward and
	// its commit has that entry forwarded again (same webhook-id) when the
	// lease ends. Each kill interrupts at most one entry per worker; more
	// repeats mean two replicas held one lease.
	if repeats := deliveries - ids; repeats > len(kills)*workers {
		t.Errorf("%d repeated forwards after %d kills of replicas with %d workers, want at most %d", repeats, len(kills), workers, len(kills)*workers)
	}
	t.Logf("%d webhooks acknowledged across %d SIGKILLs (acked at kills %v, %d retried sends); %d distinct webhook-ids in %d forwards",
		st.acked.Load(), len(kills), ackedAtKill, st.retries.Load(), ids, deliveries)

	// No item lost: every replica lists every exchanged item in its state.
	for _, r := range reps {
		got := states(r)
		for id, want := range items {
			if got[id] != want {
				t.Errorf("status on %s: item %s state %q, want %q", r.opts.Name, id, got[id], want)
			}
		}
	}
}

// streamItem is the item_id of the stream's webhook i.
func streamItem(i int) string { return fmt.Sprintf("rep-item-%04d", i) }

// stream is a running set of webhook senders.
type stream struct {
	acked    atomic.Int64
	rejected atomic.Int64
	retries  atomic.Int64   // attempts after a 5xx, 429 or connection error
	sent     []atomic.Int32 // by webhook: times its body was sent
	stop     atomic.Bool    // set when the test ends: senders give up
	done     chan struct{}
}

// sends is how many times webhook i's body was sent.
func (s *stream) sends(i int) int { return int(s.sent[i].Load()) }

func (s *stream) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// streamWebhooks sends total distinct signed webhooks, webhook i first to
// replica i mod len(reps), from 6 concurrent senders that retry like Plaid:
// on a 5xx, a 429 or a connection error the same body is sent again
// (re-signed, to the next replica, as a load balancer would), at most 500
// times; any other answer but 200 counts as rejected. The senders stop
// when the test ends (before the replicas stop), whatever its outcome.
func streamWebhooks(t *testing.T, total int, reps []*serveProc, send func(*serveProc, []byte) (int, string)) *stream {
	s := &stream{done: make(chan struct{}), sent: make([]atomic.Int32, total)}
	t.Cleanup(func() { s.stop.Store(true); <-s.done })
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for i := range next {
				if s.stop.Load() {
					return
				}
				b, _ := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
					"item_id": streamItem(i), "new_webhook_url": "https://example.com/h", "error": nil, "environment": "sandbox"})
				for attempt := range 500 {
					if s.stop.Load() {
						return
					}
					s.sent[i].Add(1)
					st, _ := send(reps[(i+attempt)%len(reps)], b)
					if st == http.StatusOK {
						s.acked.Add(1)
						break
					}
					if st != 0 && st != http.StatusTooManyRequests && st < 500 {
						s.rejected.Add(1)
						break
					}
					s.retries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(30 * time.Millisecond) // a stream, not a burst: it must straddle the kills
			}
		})
	}
	go func() { wg.Wait(); close(s.done) }()
	return s
}

// forwardSink is the tenant's app: it records every forwarded event by its
// item and its Standard Webhooks id.
type forwardSink struct {
	mu       sync.Mutex
	byItem   map[string]map[string]int // item_id → webhook-id → deliveries
	itemByID map[string]string         // webhook-id → first item_id seen with it
	clash    []string                  // webhook-ids seen with two items
}

func (f *forwardSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var ev struct {
		ItemID string `json:"item_id"`
	}
	_ = json.Unmarshal(b, &ev)
	id := r.Header.Get("webhook-id")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byItem[ev.ItemID] == nil {
		f.byItem[ev.ItemID] = map[string]int{}
	}
	f.byItem[ev.ItemID][id]++
	if prev, ok := f.itemByID[id]; !ok {
		f.itemByID[id] = ev.ItemID
	} else if prev != ev.ItemID {
		f.clash = append(f.clash, id)
	}
}

// missing lists the stream's items not forwarded yet.
func (f *forwardSink) missing(total int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for i := range total {
		if len(f.byItem[streamItem(i)]) == 0 {
			out = append(out, streamItem(i))
		}
	}
	return out
}

// stream counts the distinct webhook-ids and the deliveries of the stream's
// items, and describes every item forwarded as more events than its body
// was sent (sends) and every webhook-id carried by two items.
func (f *forwardSink) stream(total int, sends func(i int) int) (ids, deliveries int, problems []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range total {
		byID := f.byItem[streamItem(i)]
		ids += len(byID)
		for _, n := range byID {
			deliveries += n
		}
		if len(byID) > max(1, sends(i)) {
			problems = append(problems, fmt.Sprintf("%s forwarded as %d distinct events %v, its body sent %d times", streamItem(i), len(byID), byID, sends(i)))
		}
	}
	for _, id := range f.clash {
		problems = append(problems, fmt.Sprintf("webhook-id %s forwarded for two items", id))
	}
	return ids, deliveries, problems
}
