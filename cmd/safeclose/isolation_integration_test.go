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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/testguest"
)

// Issue 9.15: the real binary starts with one tenant whose plugin file is
// missing: the other tenant serves, the broken one answers 503
// tenant_unavailable. A reload that breaks the working tenant's plugin keeps
// its previous plugin serving; a reload that fixes the broken tenant brings
// it up.
func TestBrokenTenantDoesNotStopTheBinary(t *testing.T) {
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/apikey")
	bad := filepath.Join(dir, "broken.wasm")
	os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00 not really"), 0o600)
	missing := filepath.Join(dir, "missing.wasm")
	sock := listenSocket(t)
	addr := sock.Addr
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cfgPath := filepath.Join(dir, "iso.yaml")
	tenant := func(name, plugin, user string) string {
		return fmt.Sprintf(`  - name: %s
    hosts: [%s.test]
    plaid: {env: emulator}
    auth:
      plugin:
        path: %s
        capabilities: [config, crypto]
        config: {keys: {"%s": %s}}
`, name, name, plugin, sum("k-"+user), user)
	}
	writeCfg := func(goodPlugin, goodUser, otherPlugin string) {
		cfg := fmt.Sprintf("listen: %s\nadmin_listen: 127.0.0.1:0\ndata_dir: %s\nkeys: env:SAFECLOSE_KEYS\nemulator: {enabled: true, listen: 127.0.0.1:0}\ntenants:\n",
			addr, filepath.Join(dir, "data")) + tenant("good", goodPlugin, goodUser) + tenant("other", otherPlugin, "carol")
		tmp := cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, cfgPath)
	}
	writeCfg(wasm, "alice", missing)
	key := make([]byte, 32)
	rand.Read(key)
	proc := startServe(t, cfgPath, procOpts{
		Name:   "isolation",
		Socket: sock,
		Env:    []string{"SAFECLOSE_KEYS=k1:" + base64.StdEncoding.EncodeToString(key)},
		Args:   []string{"-watch", "100ms"},
	})

	get := func(host, user string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/plaid/status", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer k-"+user)
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	logged := func(s string) func() bool { return func() bool { return proc.Logged(s) } }
	proc.waitFor("alice served by the good tenant", func() bool { st, _ := get("good.test", "alice"); return st == 200 })
	if st, b := get("other.test", "carol"); st != 503 || !strings.Contains(b, "tenant_unavailable") {
		t.Fatalf("broken tenant = %d %s, want 503 tenant_unavailable", st, b)
	}
	proc.waitFor("the broken tenant in the log", logged(`"reason":"plugin_missing"`))

	writeCfg(bad, "bob", missing)
	proc.waitFor("the good tenant's refused reload", logged("reload refused for this tenant"))
	if st, b := get("good.test", "alice"); st != 200 {
		t.Fatalf("after its plugin broke on reload, good = %d %s; want its previous plugin still serving", st, b)
	}

	writeCfg(wasm, "bob", wasm)
	proc.waitFor("the fixed tenant serving carol", func() bool { st, _ := get("other.test", "carol"); return st == 200 })
	proc.waitFor("bob served after the valid change", func() bool { st, _ := get("good.test", "bob"); return st == 200 })
}
