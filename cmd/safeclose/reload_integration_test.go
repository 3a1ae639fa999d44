//go:build integration

package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/testguest"
)

// TestReloadOnConfigChange runs the real binary with the example API-key
// plugin, then edits its config: a broken plugin is refused and the old one
// keeps serving; a valid change is picked up without a restart.
func TestReloadOnConfigChange(t *testing.T) {
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/apikey")
	bad := filepath.Join(dir, "broken.wasm")
	os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00 not really"), 0o600)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Safeclose-User"))
	}))
	t.Cleanup(app.Close) // after the binary stops
	sock := listenSocket(t)
	addr := sock.Addr

	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cfgPath := filepath.Join(dir, "reload.yaml")
	writeCfg := func(plugin, user, key string, extra ...string) {
		cfg := strings.Join(extra, "\n") + "\n" + fmt.Sprintf(`listen: %s
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
        capabilities: [config, crypto]
        config: {keys: {"%s": %s}}
`, addr, filepath.Join(dir, "data"), app.URL, plugin, sum(key), user)
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, cfgPath) // atomic, as config management tools do
	}
	writeCfg(wasm, "alice", "k-alice")
	key := make([]byte, 32)
	rand.Read(key)
	proc := startServe(t, cfgPath, procOpts{
		Name:   "reload",
		Socket: sock,
		Env:    []string{"SAFECLOSE_KEYS=k1:" + base64.StdEncoding.EncodeToString(key), "R_ID=x"},
		Args:   []string{"-watch", "100ms"},
	})

	get := func(k string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+k)
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	proc.waitFor("alice served", func() bool { st, b := get("k-alice"); return st == 200 && b == "alice" })

	writeCfg(bad, "bob", "k-bob")
	proc.waitFor("the broken plugin refused", func() bool { return proc.Logged("reload refused") })
	if st, b := get("k-alice"); st != 200 || b != "alice" {
		t.Fatalf("after a refused reload: %d %q; want the old plugin still serving", st, b)
	}
	if st, _ := get("k-bob"); st != 401 {
		t.Fatalf("k-bob after a refused reload = %d, want 401", st)
	}

	writeCfg(wasm, "bob", "k-bob")
	proc.waitFor("bob served after the valid change", func() bool { st, b := get("k-bob"); return st == 200 && b == "bob" })
	if st, _ := get("k-alice"); st != 401 {
		t.Errorf("k-alice after reload = %d, want 401", st)
	}

	// A setting only a restart applies is named, not silently kept.
	writeCfg(wasm, "bob", "k-bob", "limits: {read_timeout: 5s}")
	proc.waitFor("the restart-only setting named", func() bool {
		return proc.Logged("apply only at the next restart") && proc.Logged("limits.read_timeout")
	})
	if st, b := get("k-bob"); st != 200 || b != "bob" {
		t.Fatalf("after a restart-only change: %d %q; want bob still served", st, b)
	}
}
