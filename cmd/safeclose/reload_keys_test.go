package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/proxy"
	"github.com/safeclose/safeclose/store"
)

// keys: file:PATH is read at start. A rotation's first step rewrites that
// file (the new primary first, the old key after it) under the same
// reference, and a reload does not apply it: the reload names keys among
// the settings that apply only at the next restart (it logged only "config
// reloaded" before), and, with the file as it was at start, names nothing.
func TestReloadNamesAChangedKeyringFile(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	_, oldB64, _ := store.GenerateKey()
	_, newB64, _ := store.GenerateKey()
	if err := os.WriteFile(keys, []byte("kold:"+oldB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "c.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
keys: file:%s
tenants:
  - name: dev
    hosts: [x.test]
    plaid: {env: sandbox, client_id: env:ZZ_PLAID, secret: env:ZZ_PLAID}
    auth: {api_keys: [{sha256: %s, user: u}]}
`, filepath.Join(dir, "data"), keys, strings.Repeat("b", 64))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ZZ_PLAID", "x")

	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	started, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	secrets := noteSecrets(started)
	kr, err := readKeyring(started)
	if err != nil || kr.PrimaryID() != "kold" {
		t.Fatalf("keyring at start: %v, %v", kr, err)
	}
	db, err := store.Open(store.Options{InMemory: true, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := &builder{log: log}
	set := b.tenants(context.Background(), started)
	if err := startSet(set, log); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{Store: db, Logger: log, Tenants: proxyTenants(set)})
	if err != nil {
		t.Fatal(err)
	}

	// A reload with the keys file as it was at start names nothing.
	logs.Reset()
	set = reload(context.Background(), cfgPath, started, secrets, b, srv, set, log)
	if out := logs.String(); strings.Contains(out, "apply only at the next restart") {
		t.Fatalf("a reload with nothing changed warned: %s", out)
	}

	// Rotation, step 1 (README "Keys"): the new key first, the old after it.
	if err := os.WriteFile(keys, []byte("knew:"+newB64+",kold:"+oldB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	reload(context.Background(), cfgPath, started, secrets, b, srv, set, log)

	out := logs.String()
	t.Logf("reload log:\n%s", out)
	if !strings.Contains(out, "apply only at the next restart") || !strings.Contains(out, `"keys"`) || strings.Contains(out, newB64) {
		t.Fatalf("the keys file now names primary knew, the process still seals under kold: the reload must name keys (and never a key) as restart-only")
	}
}
