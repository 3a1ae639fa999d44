package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/store"
)

// The offline commands that write to a Badger data_dir refuse one that a
// running serve holds, naming the cause, rather than write beside it.
func TestOfflineCommandsRefuseAHeldDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	kr, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	held, err := store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1}) // as serve holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := offlineConfig(t, dir, "data_dir: "+data+"\nkeys: env:SAFECLOSE_LOCK_KEYS\n")
	t.Setenv("SAFECLOSE_LOCK_KEYS", keys)
	for _, args := range [][]string{
		{"keys", "rotate", "-config", cfg},
		{"webhooks", "replay", "-config", cfg, "some-id"},
		{"items", "orphans", "-config", cfg, "-forget", "t1", "item-1"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "stop the proxy first") {
			t.Errorf("%s with the data_dir held = %v, want refused with 'stop the proxy first'", strings.Join(args[:2], " "), err)
		}
	}
}

// offlineConfig writes a config for the offline commands: head (data_dir,
// keys, store…) and one tenant; it returns its path.
func offlineConfig(t *testing.T, dir, head string) string {
	t.Helper()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(head+`tenants:
  - name: t1
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "`+strings.Repeat("b", 64)+`", user: u}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}
