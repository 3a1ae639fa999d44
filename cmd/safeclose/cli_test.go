package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/testguest"
	"github.com/safeclose/safeclose/store"
)

// syncBuf is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// `safeclose sandbox` answers /sandbox/public_token/create as Plaid would.
func TestSandboxSubcommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"sandbox", "-addr", "127.0.0.1:0"}, &out, io.Discard) }()
	var base string
	for i := 0; i < 200 && base == ""; i++ {
		if _, rest, ok := strings.Cut(out.String(), "listening on "); ok {
			base = strings.Fields(rest)[0]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("sandbox printed no address: %q", out.String())
	}
	res, err := http.Post(base+"/sandbox/public_token/create", "application/json", strings.NewReader(
		`{"client_id":"safeclose-dev","secret":"safeclose-dev-secret","institution_id":"ins_109508","initial_products":["transactions"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(fmt.Sprint(body["public_token"]), "public-sandbox-") || body["request_id"] == nil {
		t.Errorf("public_token/create = %d %v %v", res.StatusCode, res.Header, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("sandbox exit: %v", err)
	}
}

// `safeclose webhook verify` passes the real Plaid webhook at its iat and
// names the failing step otherwise.
func TestWebhookVerifyCommand(t *testing.T) {
	raw, err := os.ReadFile("testdata/plaid-webhook-sandbox.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		JWK     json.RawMessage `json:"sandbox_jwk"`
		Webhook struct {
			JWT  string `json:"plaid_verification"`
			IAT  int64  `json:"iat"`
			Body string `json:"body"`
		} `json:"webhook"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	jwk := write("jwk.json", string(v.JWK))
	body := write("body.json", v.Webhook.Body)
	tampered := write("tampered.json", strings.Replace(v.Webhook.Body, "390", "391", 1))
	tests := []struct {
		name, body string
		at         int64
		wantErr    bool
		wantOut    string
	}{
		{"verifies at iat", body, v.Webhook.IAT + 60, false, "body_sha256  ok"},
		{"stale", body, v.Webhook.IAT + 3600, true, "iat          FAILED"},
		{"tampered body", tampered, v.Webhook.IAT + 60, true, "body_sha256  FAILED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), []string{"webhook", "verify", "--body", tt.body, "--header", v.Webhook.JWT,
				"--jwk", jwk, "--at", fmt.Sprint(tt.at)}, &out, io.Discard)
			if (err != nil) != tt.wantErr || !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("err = %v, out:\n%s\nwant err=%v and %q", err, out.String(), tt.wantErr, tt.wantOut)
			}
		})
	}
}

// `safeclose keys rotate` re-seals every item under the new primary key;
// afterwards the old key can be dropped and every item still opens.
func TestKeysRotateCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var oldKey, newKey bytes.Buffer
	if err := run(context.Background(), []string{"keys", "gen"}, &oldKey, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"keys", "gen"}, &newKey, io.Discard); err != nil {
		t.Fatal(err)
	}
	old, nk := strings.TrimSpace(oldKey.String()), strings.TrimSpace(newKey.String())
	kr, err := store.ParseKeyring(old)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Options{Dir: data, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		it := store.Item{Tenant: "dev", User: "alice", ItemID: fmt.Sprintf("item-%d", i), InstitutionID: fmt.Sprintf("ins_%d", i)}
		if err := db.SaveItem(it, fmt.Sprintf("access-sandbox-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nkeys: env:ROTATE_TEST_KEYS\ntenants:\n  - name: dev\n    hosts: [x.test]\n    plaid: {env: sandbox, client_id: env:X, secret: env:X, client_name: X, products: [transactions], country_codes: [US], language: en}\n    auth: {api_keys: [{sha256: %s, user: u}]}\n", data, strings.Repeat("b", 64))), 0o600)
	t.Setenv("ROTATE_TEST_KEYS", nk+","+old)
	t.Setenv("X", "x")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "rotate", "-config", cfg}, &out, io.Discard); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if !strings.Contains(out.String(), "re-sealed and re-authenticated 5 items") {
		t.Errorf("rotate said %q", out.String())
	}
	kr2, _ := store.ParseKeyring(nk) // the old key is retired
	db, err = store.Open(store.Options{Dir: data, Keyring: kr2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 5 {
		tok, err := db.AccessToken("dev", "alice", fmt.Sprintf("item-%d", i))
		if err != nil || tok != fmt.Sprintf("access-sandbox-%d", i) {
			t.Errorf("item-%d after rotation: %q, %v", i, tok, err)
		}
	}
}

// `safeclose plugin check` and `plugin run` work on a freshly built example.
func TestPluginCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Wasm plugin")
	}
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/pathrule")
	cache := testguest.CompilationCacheDir(t) // -cache: compiled once per run of the suite
	var out bytes.Buffer
	if err := run(context.Background(), []string{"plugin", "check", wasm, "-cap", "config", "-cache", cache}, &out, io.Discard); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"abi:       safeclose_v1", "auth_handle", "verdict:   OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	err := run(context.Background(), []string{"plugin", "check", wasm, "-cap", "", "-cache", cache}, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "REFUSED") || !strings.Contains(out.String(), `"config" capability`) {
		t.Errorf("check without the config capability: %v\n%s", err, out.String())
	}
	conf := filepath.Join(dir, "conf.json")
	os.WriteFile(conf, []byte(`{"allow_cidrs":["10.0.0.0/8"],"allow_paths":["/internal/"]}`), 0o600)
	for _, tc := range []struct{ src, req, want string }{
		{"10.0.0.9:1234", "GET /internal/metrics", `"subject": "net:10.0.0.9"`},
		{"192.0.2.1:1234", "GET /internal/metrics", `"status": 403`},
	} {
		out.Reset()
		if err := run(context.Background(), []string{"plugin", "run", wasm, "-cap", "config", "-config", conf, "-cache", cache,
			"--request", tc.req, "--source", tc.src}, &out, io.Discard); err != nil {
			t.Fatalf("run: %v", err)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("run from %s: %s, want %s", tc.src, out.String(), tc.want)
		}
	}
	if es, err := os.ReadDir(cache); err != nil || len(es) == 0 {
		t.Errorf("-cache %s holds %d entries (%v); want the compiled module", cache, len(es), err)
	}
}
