package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Warnings names every secret file other local users can read, by field
// path: the keyring, the PostgreSQL DSN (its password), a tenant's Plaid
// secret, a forward signing secret, a plugin secret and a TLS key, not
// only the keyring; a file readable by its owner alone is not named, and
// no warning carries a secret's contents.
func TestWarningsForReadableSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644) // whatever the umask
		return p
	}
	dsn := write("dsn", "postgres://safeclose:hunter2@db/safeclose")
	pluginSecret := write("plugin-secret", "plugin-hs256-secret")
	tlsKey := write("tls.key", "-----BEGIN PRIVATE KEY-----")
	private := write("private", "0123456789abcdef0123456789abcd")
	if err := os.Chmod(private, 0o600); err != nil {
		t.Fatal(err)
	}
	plaid := write("plaid-secret", "0123456789abcdef0123456789abcd")
	fwd := write("fwd", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f := Default()
	f.Store = Store{Backend: BackendPostgres, DSN: SecretRef("file:" + dsn)}
	f.Tenants = []Tenant{{
		Name: "a", Hosts: []string{"a.test"},
		Plaid:   Plaid{Env: "sandbox", ClientID: SecretRef("file:" + private), Secret: SecretRef("file:" + plaid)},
		Auth:    Auth{Plugin: &Plugin{Path: "p.wasm", Secrets: map[string]SecretRef{"main": SecretRef("file:" + pluginSecret)}}},
		TLS:     &TenantTLS{CertFile: "c.pem", KeyFile: tlsKey},
		Forward: []Destination{{Name: "app", URL: "https://app.test/hook", Secret: SecretRef("file:" + fwd)}},
	}}
	ws := strings.Join(f.Warnings(), "\n")
	t.Logf("warnings: %q", ws)
	for _, w := range []struct{ path, file string }{
		{"store.dsn", dsn}, {"tenants[0].plaid.secret", plaid}, {"tenants[0].forward[0].secret", fwd},
		{"tenants[0].auth.plugin.secrets.main", pluginSecret}, {"tenants[0].tls.key_file", tlsKey},
	} {
		if !strings.Contains(ws, w.path+": "+w.file+" can be read by other users") {
			t.Errorf("%s (%s) is mode 0644 (readable by every local user) and Warnings does not name it", w.path, w.file)
		}
	}
	if strings.Contains(ws, private) {
		t.Errorf("a mode 0600 secret file is named: %q", ws)
	}
	if strings.Contains(ws, "hunter2") || strings.Contains(ws, "whsec_") {
		t.Errorf("a warning carries a secret: %q", ws)
	}
}
