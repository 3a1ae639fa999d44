//go:build integration

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
)

// TestCrashLosesNoAcknowledgedWebhook runs the real safeclose binary under a
// stream of Plaid-signed webhooks and kills it with SIGKILL several times.
// The public socket belongs to the test (socket activation, LISTEN_FDS=1),
// so connections queue while the process restarts, as under systemd. Every
// webhook that got a 200 must reach the tenant's app, and no stored event is
// processed as two (its Standard Webhooks id is stable across redeliveries,
// so the app dedupes at-least-once forwarding).
func TestCrashLosesNoAcknowledgedWebhook(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t, dir)

	sim, err := plaidsim.New(plaidsim.Options{ClientID: "crash-client", Secret: "crash-secret"})
	if err != nil {
		t.Fatal(err)
	}
	plaid := httptest.NewServer(sim)
	defer plaid.Close()
	defer sim.Close()

	// The tenant's app: records each forwarded event by webhook-id.
	var mu sync.Mutex
	byID := map[string]string{} // webhook-id → body
	idsByBody := map[string]map[string]bool{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev struct {
			ItemID string `json:"item_id"`
		}
		_ = json.Unmarshal(b, &ev)
		id := r.Header.Get("webhook-id")
		mu.Lock()
		byID[id] = ev.ItemID
		if idsByBody[ev.ItemID] == nil {
			idsByBody[ev.ItemID] = map[string]bool{}
		}
		idsByBody[ev.ItemID][id] = true
		mu.Unlock()
	}))
	defer app.Close()

	addr, lnFile := activationListener(t)

	secret := make([]byte, 32)
	rand.Read(secret)
	key := make([]byte, 32)
	rand.Read(key)
	cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
keys: env:SAFECLOSE_KEYS
webhooks: {workers: 2, max_attempts: 50, backoff: 50ms, max_backoff: 200ms, lease: 2s}
tenants:
  - name: crash
    hosts: [127.0.0.1]
    plaid:
      env: %s
      client_id: env:CRASH_CLIENT_ID
      secret: env:CRASH_SECRET
      client_name: Crash
      products: [transactions]
      country_codes: [US]
      language: en
    auth:
      api_keys: [{sha256: "%s", user: u}]
    forward:
      - {name: app, url: %s, secret: env:CRASH_FWD_SECRET}
`, addr, filepath.Join(dir, "data"), plaid.URL, strings.Repeat("a", 64), app.URL)
	cfgPath := filepath.Join(dir, "crash.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"SAFECLOSE_KEYS=k1:"+base64.StdEncoding.EncodeToString(key),
		"CRASH_CLIENT_ID=crash-client", "CRASH_SECRET=crash-secret",
		"CRASH_FWD_SECRET=whsec_"+base64.StdEncoding.EncodeToString(secret),
		"LISTEN_FDS=1")
	var logs bytes.Buffer
	var logMu sync.Mutex
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "-config", cfgPath)
		cmd.Env = env
		cmd.ExtraFiles = []*os.File{lnFile} // fd 3
		w := &lockedWriter{mu: &logMu, w: &logs}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// The sender: Plaid-like, it retries a webhook until it gets a 200.
	const total = 1000
	type hook struct {
		item string
		body []byte
	}
	hooks := make([]hook, total)
	for i := range hooks {
		item := fmt.Sprintf("crash-item-%04d", i)
		b, err := plaidsim.FormatBody(map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
			"item_id": item, "new_webhook_url": "https://example.com/h", "error": nil, "environment": "sandbox"})
		if err != nil {
			t.Fatal(err)
		}
		hooks[i] = hook{item, b}
	}
	var acked sync.Map
	var ackCount atomic.Int64
	sendDone := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(sendDone)
		var wg sync.WaitGroup
		next := make(chan hook, total)
		for _, h := range hooks {
			next <- h
		}
		close(next)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for h := range next {
					for attempt := 0; attempt < 400; attempt++ {
						jwt, err := sim.Sign(h.body) // re-signed per attempt, as Plaid does
						if err != nil {
							return
						}
						req, _ := http.NewRequest("POST", "http://"+addr+"/api/webhooks/plaid", bytes.NewReader(h.body))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Plaid-Verification", jwt)
						res, err := client.Do(req)
						if err == nil {
							io.Copy(io.Discard, res.Body)
							res.Body.Close()
							if res.StatusCode == 200 {
								acked.Store(h.item, true)
								ackCount.Add(1)
								break
							}
						}
						time.Sleep(20 * time.Millisecond)
					}
					time.Sleep(30 * time.Millisecond) // a stream, not a burst: it must straddle the kills
				}
			}()
		}
		wg.Wait()
	}()

	cmd := start()
	kills := 0
	var ackedAtKill []int64
	for kills < 4 {
		time.Sleep(time.Duration(400+kills*150) * time.Millisecond)
		ackedAtKill = append(ackedAtKill, ackCount.Load())
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		t.Logf("SIGKILL %d after %d acknowledged", kills, ackCount.Load())
		cmd = start()
	}
	select {
	case <-sendDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("sender did not finish")
	}
	// Every acknowledged webhook must reach the app (bounded wait).
	deadline := time.Now().Add(2 * time.Minute)
	var missing []string
	for {
		missing = missing[:0]
		mu.Lock()
		acked.Range(func(k, _ any) bool {
			if len(idsByBody[k.(string)]) == 0 {
				missing = append(missing, k.(string))
			}
			return true
		})
		mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if ackedAtKill[len(ackedAtKill)-1] >= total {
		t.Fatalf("the stream ended before the last kill (acked at kills: %v); the test proves nothing", ackedAtKill)
	}
	if n := ackCount.Load(); n != total {
		t.Errorf("%d of %d webhooks acknowledged; the sender retries until 200", n, total)
	}
	if len(missing) > 0 {
		logMu.Lock()
		tail := logs.String()
		logMu.Unlock()
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		t.Fatalf("%d acknowledged webhooks never processed (e.g. %v)\nlog tail:\n%s", len(missing), missing[:min(5, len(missing))], tail)
	}
	mu.Lock()
	defer mu.Unlock()
	for item, ids := range idsByBody {
		if len(ids) != 1 {
			t.Errorf("event for %s was processed as %d distinct events %v; want one (stable webhook-id)", item, len(ids), ids)
		}
	}
	t.Logf("%d webhooks acknowledged across %d SIGKILLs; %d forwarded events, all distinct, none lost", ackCount.Load(), kills, len(idsByBody))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// buildBinary builds the safeclose binary from the tree into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "safeclose")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// activationListener opens the public socket in the test, to hand to the
// binary as fd 3 (LISTEN_FDS=1): it outlives every restart of the process.
func activationListener(t *testing.T) (string, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); ln.Close() })
	return ln.Addr().String(), f
}
