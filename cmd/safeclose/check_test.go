package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/internal/testguest"
)

// checkConfig writes a config with one plugin tenant (wasm) and extra
// top-level YAML, and returns its path.
func checkConfig(t *testing.T, wasm, extra string) string {
	t.Helper()
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("k-alice"))
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: %s
%s
tenants:
  - name: c
    hosts: [c.test]
    plaid: {env: sandbox, client_id: env:CHECK_TEST_ID, secret: env:CHECK_TEST_ID, client_name: C, products: [transactions], country_codes: [US], language: en}
    auth:
      plugin:
        path: %s
        capabilities: [config, crypto]
        config: {keys: {"%s": alice}}
`, filepath.Join(dir, "data"), extra, wasm, hex.EncodeToString(sum[:]))
	path := filepath.Join(dir, "check.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// `safeclose check` builds a config as serve would, without serving or
// opening the store: a good one passes, and every problem serve would meet
// (a plugin that does not load, a certificate that does not open, a keyring
// that is not set) is named, and fails the check.
func TestCheckSubcommand(t *testing.T) {
	t.Setenv("CHECK_TEST_ID", "x")
	t.Setenv("CHECK_TEST_KEYS", "k1:"+strings.Repeat("A", 43)+"=")
	good := checkConfig(t, testguest.Path(t, "plugins/examples/apikey"), "keys: env:CHECK_TEST_KEYS")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check", "-config", good}, &out, &out); err != nil {
		t.Fatalf("check of a good config: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "config ok: 1 tenant, 1 plugin loaded") {
		t.Errorf("check output %q; want config ok", out.String())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(good), "data")); !os.IsNotExist(err) {
		t.Errorf("check touched data_dir (%v); it must not open the store", err)
	}

	broken := filepath.Join(t.TempDir(), "broken.wasm")
	os.WriteFile(broken, []byte("\x00asm\x01\x00\x00\x00 not really"), 0o600)
	bad := checkConfig(t, broken, "keys: env:CHECK_TEST_UNSET\ntls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/c.key}")
	out.Reset()
	err := run(context.Background(), []string{"check", "-config", bad}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "3 problems") {
		t.Fatalf("check of a bad config = %v, want 3 problems\n%s", err, out.String())
	}
	for _, want := range []string{"keys: ", "CHECK_TEST_UNSET", "tls: ", "/nonexistent/c.pem", "tenant c: ", "plugin_refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}
