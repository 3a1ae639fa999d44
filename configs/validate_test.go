package configs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// minimal is a valid config that the cases below change one field at a time.
const minimal = `
data_dir: /var/lib/safeclose
keys: env:SAFECLOSE_KEYS
tenants:
  - name: a
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "` + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" + `", user: u}]}
`

func decodeMinimal(t *testing.T, extra string) *File {
	t.Helper()
	f, err := Decode(strings.NewReader(minimal + extra))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return f
}

func TestMinimalIsValid(t *testing.T) {
	t.Parallel()
	if err := decodeMinimal(t, "").Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
}

// Issue 9.17: a negative duration silently disabled the protection it set
// (a negative read_timeout means no read deadline, a negative dedupe_ttl no
// dedupe). Every duration field refuses a negative value, by field path.
func TestValidateRefusesNegativeDurations(t *testing.T) {
	t.Parallel()
	plugin := "      plugin: {path: p.wasm, %s: -1s}\n"
	tests := []struct {
		name, yaml, wantPath string
	}{
		{"read_timeout", "limits: {read_timeout: -1s}\n", "limits.read_timeout"},
		{"write_timeout", "limits: {write_timeout: -1s}\n", "limits.write_timeout"},
		{"idle_timeout", "limits: {idle_timeout: -1ms}\n", "limits.idle_timeout"},
		{"plaid_timeout", "limits: {plaid_timeout: -5s}\n", "limits.plaid_timeout"},
		{"lease", "webhooks: {lease: -30s}\n", "webhooks.lease"},
		{"backoff", "webhooks: {backoff: -1s}\n", "webhooks.backoff"},
		{"max_backoff", "webhooks: {max_backoff: -1m}\n", "webhooks.max_backoff"},
		{"dedupe_ttl", "webhooks: {dedupe_ttl: -48h}\n", "webhooks.dedupe_ttl"},
		{"plugin timeout", strings.Replace(plugin, "%s", "timeout", 1), "tenants[1].auth.plugin.timeout"},
		{"plugin cache_ttl", strings.Replace(plugin, "%s", "cache_ttl", 1), "tenants[1].auth.plugin.cache_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			y := tt.yaml
			if strings.HasPrefix(y, "      plugin") {
				y = "  - name: b\n    hosts: [b.example]\n    plaid: {env: sandbox, client_id: env:B, secret: env:B}\n    auth:\n" + y
			}
			err := decodeMinimal(t, y).Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantPath+": ") {
				t.Errorf("Validate(%s) = %v, want an error naming %s", tt.name, err, tt.wantPath)
			}
		})
	}
}

// Issue 9.17: a second YAML document in the file was ignored, so an operator
// who appended a block after "---" believed it was in force.
func TestDecodeRefusesASecondDocument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		wantErr    bool
	}{
		{"second document", minimal + "---\nlisten: 0.0.0.0:80\n", true},
		{"second empty mapping", minimal + "---\n{}\n", true},
		{"leading separator only", "---\n" + minimal, false},
		{"trailing separator only", minimal + "---\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(strings.NewReader(tt.yaml))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Decode = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "document") {
				t.Errorf("Decode = %v, want it to say a second document is not allowed", err)
			}
		})
	}
}

// Issue 9.17: the sealing keyring stored inside data_dir sits beside the data
// it protects: a copy of the directory is then a copy of the tokens.
func TestValidateRefusesKeyFileInDataDir(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dataDir, keys string
		wantErr             bool
	}{
		{"inside", "/var/lib/safeclose", "file:/var/lib/safeclose/keys", true},
		{"deeper inside", "/var/lib/safeclose/", "file:/var/lib/safeclose/sub/../k", true},
		{"relative inside", "./data", "file:data/keys", true},
		{"the dir itself", "/var/lib/safeclose", "file:/var/lib/safeclose", true},
		{"sibling prefix", "/var/lib/safeclose", "file:/var/lib/safeclose-keys", false},
		{"elsewhere", "/var/lib/safeclose", "file:/run/secrets/keys", false},
		{"env", "/var/lib/safeclose", "env:SAFECLOSE_KEYS", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := decodeMinimal(t, "")
			f.DataDir, f.Keys = tt.dataDir, SecretRef(tt.keys)
			err := f.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate(data_dir=%s keys=%s) = %v, want error: %v", tt.dataDir, tt.keys, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "keys: ") {
				t.Errorf("error %v does not name the keys field", err)
			}
		})
	}
}

func TestPathWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dir, p string
		want   bool
	}{
		{"/a/b", "/a/b/c", true},
		{"/a/b", "/a/b", true},
		{"/a/b", "/a/bc", false},
		{"/a/b", "/a/b/../c", false},
		{"/", "/x", true},
		{"data", "./data/k", true},
		{"data", "/abs/k", false},
	}
	for _, tt := range tests {
		if got := PathWithin(tt.dir, tt.p); got != tt.want {
			t.Errorf("PathWithin(%q, %q) = %v, want %v", tt.dir, tt.p, got, tt.want)
		}
	}
}

// Issue 9.17: admin_listen on a public address exposed /metrics and /readyz
// without a word. Warnings (not errors: it may be behind a firewall) name it.
func TestWarningsForPublicAdminListener(t *testing.T) {
	t.Parallel()
	tests := []struct {
		admin string
		warn  bool
	}{
		{"127.0.0.1:9090", false},
		{"[::1]:9090", false},
		{"localhost:9090", false},
		{"127.0.0.2:9090", false},
		{"0.0.0.0:9090", true},
		{":9090", true},
		{"[::]:9090", true},
		{"10.1.2.3:9090", true},
		{"admin.example:9090", true},
	}
	for _, tt := range tests {
		f := decodeMinimal(t, "")
		f.AdminListen = tt.admin
		if err := f.Validate(); err != nil {
			t.Fatalf("Validate(admin_listen=%s) = %v", tt.admin, err)
		}
		ws := f.Warnings()
		got := slices.ContainsFunc(ws, func(w string) bool { return strings.HasPrefix(w, "admin_listen: ") })
		if got != tt.warn {
			t.Errorf("Warnings(admin_listen=%s) = %q, want an admin_listen warning: %v", tt.admin, ws, tt.warn)
		}
	}
}

// Issue 10.3: one http(s) URL check behind every URL field.
func TestIsHTTPURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"http://a", true},
		{"https://a.example:8443/p?q", true},
		{"ftp://a", false},
		{"https://", false},
		{"/relative", false},
		{"a.example", false},
		{"http://[::1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isHTTPURL(tt.in); got != tt.want {
			t.Errorf("isHTTPURL(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// Tenant isolation pass: an api_keys user is the user's key in the store and
// their X-Safeclose-User upstream. A space or tab at either end is stripped
// by the upstream, which then saw another user ("alice " as "alice"); a NUL
// ran into the store's key separator ("alice\x00x"'s items broke alice's
// status as a failed integrity check); CR and LF reached the upstream as
// spaces. It follows set_subject's rule (hostabi/ABI.md §4.2).
func TestValidateRefusesAPIKeyUsersThatAreNotHeaderValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, user string
		ok         bool
	}{
		{"plain", `alice`, true},
		{"inner space and UTF-8", `alice smith å`, true},
		{"CRLF", `alice\r\nX-Safeclose-Tenant: b`, false},
		{"LF", `alice\nx`, false},
		{"NUL", `alice\0x`, false},
		{"trailing space", `alice `, false},
		{"leading tab", `\talice`, false},
		{"too long", strings.Repeat("a", 257), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			y := strings.Replace(minimal, "user: u}", `user: "`+tt.user+`"}`, 1)
			f, err := Decode(strings.NewReader(y))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = f.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate(user %q) = %v, want ok %v", f.Tenants[0].Auth.APIKeys[0].User, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "tenants[0].auth.api_keys[0].user: ") {
				t.Errorf("Validate = %v, want it to name tenants[0].auth.api_keys[0].user", err)
			}
		})
	}
}

// The same key twice in one tenant's api_keys would mean whichever user a
// map kept last (audit B); it is refused, naming the second entry.
func TestValidateRefusesTheSameAPIKeyTwice(t *testing.T) {
	t.Parallel()
	k := `{sha256: "` + strings.Repeat("b", 64) + `", user: `
	y := strings.Replace(minimal, k+"u}]", k+"u}, "+k+"v}]", 1)
	f, err := Decode(strings.NewReader(y))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(f.Tenants[0].Auth.APIKeys) != 2 {
		t.Fatalf("the test config has %d keys, want 2", len(f.Tenants[0].Auth.APIKeys))
	}
	err = f.Validate()
	if err == nil || !strings.Contains(err.Error(), "tenants[0].auth.api_keys[1].sha256: the same key as api_keys[0]") {
		t.Fatalf("Validate = %v, want the second entry refused", err)
	}
}

// proxy_protocol names its balancers by address or range; max_conns_per_ip
// cannot count clients a PROXY header has not named yet.
func TestValidateProxyProtocol(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"ranges and addresses", "proxy_protocol: {from: [10.0.0.0/8, 192.0.2.10, \"2001:db8::/32\"]}\n", ""},
		{"empty", "proxy_protocol: {from: []}\n", "proxy_protocol.from: required"},
		{"not an address", "proxy_protocol: {from: [10.0.0.0/8, lb.internal]}\n", "proxy_protocol.from[1]: must be an IP address or a CIDR range"},
		{"with max_conns_per_ip", "proxy_protocol: {from: [10.0.0.1]}\nlimits: {max_conns_per_ip: 10}\n", "limits.max_conns_per_ip: cannot be combined with proxy_protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := Decode(strings.NewReader(tt.yaml + minimal))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = f.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	f, _ := Decode(strings.NewReader(tests[0].yaml + minimal))
	got := f.ProxyProtocol.Prefixes()
	want := []string{"10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("Prefixes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("Prefixes[%d] = %v, want %s", i, got[i], want[i])
		}
	}
}

// A keys file other users can read is named in a warning (audit H).
func TestWarningsForReadableKeysFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "keys")
	if err := os.WriteFile(p, []byte("k1:x"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644) // whatever the umask
	f := Default()
	f.Keys = SecretRef("file:" + p)
	if ws := strings.Join(f.Warnings(), "\n"); !strings.Contains(ws, "keys: "+p+" can be read by other users") {
		t.Fatalf("warnings %q: want the readable keys file named", ws)
	}
	os.Chmod(p, 0o600)
	if ws := strings.Join(f.Warnings(), "\n"); strings.Contains(ws, "keys:") {
		t.Fatalf("warnings %q for a 0600 keys file", ws)
	}
}

// webhooks.source_ips takes addresses and CIDR prefixes, and names a bad
// entry by its index.
func TestWebhookSourceIPs(t *testing.T) {
	t.Parallel()
	f := decodeMinimal(t, "webhooks: {source_ips: [52.21.26.131, 52.88.82.0/24, \"2001:db8::/32\", \"::ffff:52.41.247.19\"]}\n")
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	var got []string
	for _, p := range f.Webhooks.SourcePrefixes() {
		got = append(got, p.String())
	}
	if want := []string{"52.21.26.131/32", "52.88.82.0/24", "2001:db8::/32", "52.41.247.19/32"}; !slices.Equal(got, want) {
		t.Errorf("ParsePrefix = %v, want %v", got, want)
	}
	for _, bad := range []string{"52.21.26", "plaid.com", "10.0.0.0/33", ""} {
		err := decodeMinimal(t, "webhooks: {source_ips: [52.21.26.131, \""+bad+"\"]}\n").Validate()
		if err == nil || !strings.Contains(err.Error(), "webhooks.source_ips[1]: ") {
			t.Errorf("Validate(source_ips %q) = %v, want an error naming webhooks.source_ips[1]", bad, err)
		}
	}
}

// A forward over plain http to another host is warned about: the event
// travels readable, and the user and tenant headers beside the signed
// body can be changed on the way (a review of 2026-12-08).
func TestWarningsForPlainHTTPForward(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		url  string
		warn bool
	}{
		{"https://app.example/hooks", false},
		{"http://127.0.0.1:3000/hooks", false},
		{"http://localhost/hooks", false},
		{"http://app.internal/hooks", true},
		{"http://10.0.0.5:8080/hooks", true},
	} {
		f := decodeMinimal(t, "")
		f.Tenants[0].Forward = []Destination{{Name: "app", URL: tt.url, Secret: "env:X"}}
		ws := f.Warnings()
		got := slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, ".forward[0].url: ") })
		if got != tt.warn {
			t.Errorf("Warnings(forward %s) = %q, want a forward warning: %v", tt.url, ws, tt.warn)
		}
	}
}
