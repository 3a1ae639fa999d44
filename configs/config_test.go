package configs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDefaultConfigIsValid(t *testing.T) {
	t.Parallel()
	f, err := Load("")
	if err != nil {
		t.Fatalf("Load(embedded) = %v", err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("embedded default: Validate() = %v, want nil", err)
	}
	if f.Listen != "127.0.0.1:8080" || f.AdminListen != "127.0.0.1:9090" || f.DataDir != "./data" {
		t.Errorf("defaults = %q %q %q", f.Listen, f.AdminListen, f.DataDir)
	}
	if !f.Emulator.Enabled || f.Tenants[0].Plaid.Env != "emulator" {
		t.Errorf("dev default must use the embedded emulator")
	}
}

func TestProductionExampleIsValid(t *testing.T) {
	t.Parallel()
	f, err := Load("production.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("production example: Validate() = %v", err)
	}
}

func TestDecodeRejectsUnknownKeys(t *testing.T) {
	t.Parallel()
	_, err := Decode(strings.NewReader("listen: 127.0.0.1:1\nlisten_typo: x\n"))
	if err == nil || !strings.Contains(err.Error(), "listen_typo") {
		t.Fatalf("Decode(unknown key) = %v, want error naming listen_typo", err)
	}
}

func TestValidateReportsEveryProblemByPath(t *testing.T) {
	t.Parallel()
	const y = `
listen: nope
keys: s3cr3t-inline
tenants:
  - name: Bad Name
    hosts: []
    plaid: {env: ftp://x}
    auth: {}
  - name: b
    hosts: [a.example]
    plaid: {env: sandbox}
    auth:
      api_keys: [{sha256: abc, user: ""}]
      plugin: {path: "", capabilities: [net]}
    forward: [{name: x, url: "nope", secret: inline}]
`
	f, err := Decode(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, want := range []string{
		"listen:", "keys:", "tenants[0].name", "tenants[0].hosts", "tenants[0].plaid.env", "tenants[0].auth",
		"tenants[1].plaid.client_id", "tenants[1].plaid.secret", "tenants[1].auth.api_keys[0].sha256",
		"tenants[1].auth.api_keys[0].user", "tenants[1].auth.plugin.path", "tenants[1].auth.plugin.capabilities[0]",
		"tenants[1].forward[0].url", "tenants[1].forward[0].secret", "tenants[1].auth: set either",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t-inline") {
		t.Errorf("error echoes an inline secret: %v", err)
	}
}

func TestSecretRefResolveAndRedaction(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := os.WriteFile(p, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SC_TEST_SECRET", "from-env")
	tests := []struct {
		ref     SecretRef
		want    string
		wantErr bool
	}{
		{"env:SC_TEST_SECRET", "from-env", false},
		{SecretRef("file:" + p), "from-file", false},
		{"env:SC_TEST_UNSET_XYZ", "", true},
		{"", "", false},
		{"inline", "", true},
	}
	for _, tt := range tests {
		s, err := tt.ref.Resolve()
		if (err != nil) != tt.wantErr || s.Reveal() != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q, err=%v", tt.ref, s.Reveal(), err, tt.want, tt.wantErr)
		}
	}
	s := NewSecret([]byte("hunter2"))
	b, _ := s.MarshalJSON()
	if s.String() != "REDACTED" || string(b) != `"REDACTED"` || s.LogValue().String() != "REDACTED" {
		t.Errorf("Secret leaks: %s %s", s, b)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(DefaultYAML)
	f.Add([]byte("tenants: [{name: a, hosts: [x], plaid: {env: emulator}}]"))
	f.Add([]byte("limits: {read_timeout: 1x}"))
	f.Add([]byte("limits: {read_timeout: -1s}\nwebhooks: {dedupe_ttl: -1h}"))
	f.Add([]byte("listen: a:1\n---\nlisten: b:2\n"))
	f.Add([]byte("data_dir: d\nkeys: file:d/../d/k\nadmin_listen: ':0'\n"))
	f.Add([]byte("tenants: [{name: a, hosts: [x], plaid: {env: emulator}, auth: {plugin: {name: p, path: p.wasm, timeout: 1.5s, cache_ttl: 90m, secrets: {k: env:K},\n  config: {n: 18446744073709551616, f: .nan, d: 2001-12-14, b: !!binary aGk=, l: [1, {x: ~}], e: ''}}}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		verr := c.Validate() // must not panic
		_ = c.Warnings()
		// Issue 10.9: a decoded config re-encodes and decodes to an equal
		// value, and validates the same.
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("yaml.Marshal(Decode(%q)) = %v", b, err)
		}
		c2, err := Decode(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("Decode(yaml.Marshal(Decode(%q))) = %v; re-encoded:\n%s", b, err, out)
		}
		// Equal as encoded: yaml cannot tell a nil slice from an empty one,
		// and the config does not either; any other difference shows.
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("re-decoded config differs; input %q\nfirst:\n%s\nsecond:\n%s", b, out, out2)
		}
		if v2 := c2.Validate(); fmt.Sprint(verr) != fmt.Sprint(v2) {
			t.Fatalf("Validate = %v, after a round trip %v; input %q", verr, v2, b)
		}
	})
}

// Issue 13.3: upstream is one URL (a string, as before) or a list; the
// pool's timeouts and the pass-through limits are validated by field path.
func TestUpstreamListAndTimeouts(t *testing.T) {
	t.Parallel()
	const head = `
tenants:
  - name: a
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:X, secret: env:Y}
    auth: {api_keys: [{sha256: 0000000000000000000000000000000000000000000000000000000000000000, user: u}]}
`
	tests := []struct {
		name    string
		extra   string
		want    []string // upstream after decoding
		wantErr []string
	}{
		{"string", "    upstream: http://10.0.0.1:8080\n", []string{"http://10.0.0.1:8080"}, nil},
		{"list", "    upstream: [http://10.0.0.1:8080, https://app.example]\n    upstream_ca_file: /etc/ca.pem\n    timeouts: {connect: 1s, response_header: 5s, idle: 90s}\n",
			[]string{"http://10.0.0.1:8080", "https://app.example"}, nil},
		{"bad list", "    upstream: [http://ok.example, ftp://x, http://ok.example]\n    timeouts: {connect: -1s}\n", nil,
			[]string{"tenants[0].upstream[1]: must be an http(s) URL", "tenants[0].upstream[2]: duplicate", "tenants[0].timeouts.connect"}},
		{"bad string", "    upstream: nope\n", nil, []string{"tenants[0].upstream: must be an http(s) URL"}},
		{"limits", "limits: {max_response_bytes: 0, max_websockets: -1}\n", nil,
			[]string{"limits.max_response_bytes", "limits.max_websockets"}},
		{"intake_first_at 0", "webhooks: {intake_first_at: 0}\n", nil, []string{"webhooks.intake_first_at"}},
		{"intake_first_at -2", "webhooks: {intake_first_at: -2}\n", nil, []string{"webhooks.intake_first_at"}},
		{"intake_first_at off", "webhooks: {intake_first_at: -1}\n", []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			y := head + tt.extra
			if strings.HasPrefix(tt.extra, "limits") || strings.HasPrefix(tt.extra, "webhooks") {
				y = tt.extra + head
			}
			f, err := Decode(strings.NewReader(y))
			if err != nil {
				t.Fatalf("Decode = %v", err)
			}
			err = f.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if got := f.Tenants[0].Upstream; strings.Join(got, " ") != strings.Join(tt.want, " ") {
					t.Errorf("upstream = %v, want %v", got, tt.want)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	d := Default()
	if d.Limits.MaxResponseBytes != 64<<20 || d.Limits.MaxWebSockets != 1000 || d.Limits.WebSocketIdleTimeout.Std() != 60e9 {
		t.Errorf("Default limits = %+v", d.Limits)
	}
}
