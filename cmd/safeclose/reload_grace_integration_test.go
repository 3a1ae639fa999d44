//go:build integration

package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/testguest"
)

// TestReloadKeepsOldPluginsForBodyReads runs the real binary with the
// example API-key plugin (granted the body capability, so proxied bodies
// are read whole before it runs) and sends two requests whose body comes
// only after a SIGHUP reload has replaced the plugin: a proxied POST and a
// Plaid route (which always reads its body first). Both picked the old
// tenant table, so the old plugin must answer them. Before the fix the old
// plugins were closed one second after the swap, and a body sent 1.5s
// after it got 503 auth_unavailable.
func TestReloadKeepsOldPluginsForBodyReads(t *testing.T) {
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/apikey")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", r.Header.Get("X-Safeclose-User"), len(b))
	}))
	t.Cleanup(app.Close) // after the binary stops
	sock := listenSocket(t)

	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cfgPath := filepath.Join(dir, "grace.yaml")
	writeCfg := func(user string) {
		cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
keys: env:SAFECLOSE_KEYS
tenants:
  - name: r
    hosts: [127.0.0.1]
    upstream: %s
    plaid: {env: sandbox, client_id: env:R_ID, secret: env:R_ID, client_name: R, products: [transactions], country_codes: [US], language: en}
    auth:
      plugin:
        path: %s
        capabilities: [config, crypto, body]
        config: {keys: {"%s": %s}}
`, sock.Addr, filepath.Join(dir, "data"), app.URL, wasm, sum("k-alice"), user)
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("alice-old")
	key := make([]byte, 32)
	rand.Read(key)
	proc := startServe(t, cfgPath, procOpts{
		Name:   "grace",
		Socket: sock,
		Env:    []string{"SAFECLOSE_KEYS=k1:" + base64.StdEncoding.EncodeToString(key), "R_ID=x"},
		Args:   []string{"-watch", "0"}, // reload on SIGHUP only
	})

	// Each request sends its head with a chunked body (fasthttp hands a
	// chunked request to the handler at once, which picks the tenant
	// table), and its one chunk later.
	type pending struct {
		name string
		conn net.Conn
		body string
	}
	start := func(name, method, path, body string) pending {
		c, err := net.DialTimeout("tcp", sock.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		head := method + " " + path + " HTTP/1.1\r\nHost: " + sock.Addr + "\r\nAuthorization: Bearer k-alice\r\n" +
			"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatalf("%s: write head: %v", name, err)
		}
		return pending{name, c, body}
	}
	finish := func(p pending) (int, string) {
		t.Helper()
		p.conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(p.conn, "%x\r\n%s\r\n0\r\n\r\n", len(p.body), p.body); err != nil {
			t.Fatalf("%s: write body: %v", p.name, err)
		}
		res, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
		if err != nil {
			t.Fatalf("%s: read response: %v", p.name, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	proxied := start("proxied POST", "POST", "/upload", `{"hello":"world"}`)
	// item_id over 128 bytes is refused (400 invalid_field) only after the
	// plugin has authenticated the caller, and before anything calls Plaid.
	plaid := start("POST /api/plaid/link-token", "POST", "/api/plaid/link-token",
		`{"item_id":"`+strings.Repeat("x", 200)+`"}`)
	// Let the server route both heads to the old table. A request routed
	// after the swap is answered by the new plugin (user alice-new); that
	// is reported below rather than passing unnoticed.
	time.Sleep(500 * time.Millisecond)

	writeCfg("alice-new")
	mark := proc.logs.mark("--- SIGHUP ---\n")
	if err := proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	proc.waitFor("the reload", func() bool { return strings.Contains(proc.logs.since(mark), "config reloaded") })
	time.Sleep(1500 * time.Millisecond) // past the old one-second grace

	if st, b := finish(proxied); st != 200 || b != "alice-old 17" {
		t.Errorf("proxied POST whose body came 1.5s after the reload = %d %q, want 200 %q (the old plugin)", st, b, "alice-old 17")
	}
	if st, b := finish(plaid); st != 400 || !strings.Contains(b, "invalid_field") {
		t.Errorf("link-token whose body came 1.5s after the reload = %d %q, want 400 invalid_field (authenticated by the old plugin)", st, b)
	}

	// New requests get the new plugin.
	req, _ := http.NewRequest("GET", proc.URL()+"/x", nil)
	req.Header.Set("Authorization", "Bearer k-alice")
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "alice-new 0" {
		t.Errorf("a request after the reload = %d %q, want 200 %q", res.StatusCode, b, "alice-new 0")
	}
}
