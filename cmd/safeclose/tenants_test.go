package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// emptyModule is a valid Wasm module with nothing in it: it compiles, and
// Load refuses it (no auth_handle).
const emptyModule = "\x00asm\x01\x00\x00\x00"

// brokenTenantsConfig writes a config with one healthy tenant (built-in API
// keys, the embedded emulator) and one tenant per way a plugin is refused.
func brokenTenantsConfig(t *testing.T, dir string) string {
	t.Helper()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.wasm", emptyModule)
	garbage := write("garbage.wasm", "\x00asm\x01\x00\x00\x00 this is not wasm")
	keys := write("keys", "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	tenant := func(name, auth string) string {
		return fmt.Sprintf("  - name: %s\n    hosts: [%s.test]\n    plaid: {env: emulator}\n    auth: %s\n", name, name, auth)
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndata_dir: %s\nkeys: file:%s\nemulator: {enabled: true, listen: 127.0.0.1:0}\ntenants:\n",
		filepath.Join(dir, "data"), keys) +
		tenant("good", fmt.Sprintf("{api_keys: [{sha256: %s, user: alice}]}", sha("good-key"))) +
		tenant("missing", fmt.Sprintf("{plugin: {path: %s}}", filepath.Join(dir, "nope.wasm"))) +
		tenant("pinned", fmt.Sprintf("{plugin: {path: %s, sha256: %s}}", empty, strings.Repeat("0", 64))) +
		tenant("garbage", fmt.Sprintf("{plugin: {path: %s}}", garbage)) +
		tenant("noexport", fmt.Sprintf("{plugin: {path: %s}}", empty)) +
		tenant("nosecret", fmt.Sprintf("{plugin: {path: %s, secrets: {k: env:SAFECLOSE_TEST_UNSET_SECRET}}}", empty))
	return write("c.yaml", cfg)
}

// Issue 9.15: one tenant's refused plugin stopped the whole proxy from
// starting. The healthy tenant serves; each broken one fails closed with 503
// tenant_unavailable and shows on /readyz with its reason class.
func TestBrokenTenantDoesNotStopStart(t *testing.T) {
	dir := t.TempDir()
	cfg := brokenTenantsConfig(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncBuf
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", cfg, "-watch", "0"}, &out, &logs) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	var base, admin string
	for i := 0; i < 600 && admin == ""; i++ {
		if _, rest, ok := strings.Cut(out.String(), "listening on "); ok {
			f := strings.Fields(rest)
			base, admin = f[0], strings.TrimSuffix(f[2], ")")
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve exited: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if admin == "" {
		t.Fatalf("serve printed no address; logs:\n%s", logs.String())
	}
	get := func(url, host, key string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, b := get(base+"/api/plaid/status", "good.test", "good-key"); st != 200 {
		t.Errorf("healthy tenant: %d %s, want 200", st, b)
	}
	want := map[string]string{
		"missing":  "plugin_missing (tenants[1].auth.plugin)",
		"pinned":   "plugin_sha256_mismatch (tenants[2].auth.plugin)",
		"garbage":  "plugin_refused (tenants[3].auth.plugin)",
		"noexport": "plugin_refused (tenants[4].auth.plugin)",
		"nosecret": "secret_unavailable (tenants[5].auth.plugin)",
	}
	for name := range want {
		st, b := get(base+"/api/plaid/status", name+".test", "good-key")
		if st != 503 || !strings.Contains(b, `"code":"tenant_unavailable"`) {
			t.Errorf("tenant %s: %d %s, want 503 tenant_unavailable", name, st, b)
		}
		if !strings.Contains(logs.String(), `"tenant":"`+name+`"`) {
			t.Errorf("the log does not name broken tenant %s", name)
		}
	}
	st, b := get(admin+"/readyz", "", "")
	var rep struct {
		Ready   bool
		Tenants map[string]struct {
			Ready  bool
			Checks map[string]string
		}
	}
	if err := json.Unmarshal([]byte(b), &rep); err != nil || st != 200 || !rep.Ready {
		t.Fatalf("/readyz = %d %s (%v), want 200 ready", st, b, err)
	}
	if !rep.Tenants["good"].Ready {
		t.Errorf("good tenant not ready: %s", b)
	}
	for name, reason := range want {
		if tr := rep.Tenants[name]; tr.Ready || tr.Checks["plugins"] != reason {
			t.Errorf("/readyz tenant %s = %+v, want not ready with plugins %q", name, tr, reason)
		}
	}
	if strings.Contains(b, "k1:") || strings.Contains(b, "AAECAwQF") {
		t.Errorf("/readyz shows key material: %s", b)
	}
}

// Issue 9.15: plugins are warmed in parallel, so one slow _initialize does
// not hold back the other tenants. Each tenant's load waits until the other's
// has begun: built one after the other, the first one's wait fails.
func TestPluginsWarmInParallel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "empty.wasm")
	os.WriteFile(wasm, []byte(emptyModule), 0o600)
	y := fmt.Sprintf("data_dir: %s\nemulator: {enabled: true}\ntenants:\n", dir)
	for _, n := range []string{"a", "b"} {
		y += fmt.Sprintf("  - name: %s\n    hosts: [%s.test]\n    plaid: {env: emulator}\n    auth: {plugin: {path: %s}}\n", n, n, wasm)
	}
	cfg, err := configs.Decode(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	engine, err := hostabi.NewEngine(t.Context(), hostabi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close(context.Background())
	started := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	other := map[string]string{"a": "b", "b": "a"}
	var overlapped atomic.Int32
	b := &builder{engine: engine, log: slog.New(slog.DiscardHandler), warmers: 2,
		load: func(ctx context.Context, o hostabi.PluginOptions) (*hostabi.Plugin, error) {
			close(started[o.Tenant])
			select {
			case <-started[other[o.Tenant]]:
				overlapped.Add(1)
			case <-time.After(20 * time.Second):
			}
			return engine.Load(ctx, o)
		}}
	set := b.tenants(t.Context(), cfg)
	if overlapped.Load() != 2 {
		t.Error("the two tenants' plugins did not load at the same time")
	}
	for _, bt := range set {
		if bt.tenant.Unavailable == nil || bt.tenant.Unavailable.Reason != reasonPluginRefused {
			t.Errorf("tenant %s = %+v, want unavailable plugin_refused (the module has no export)", bt.tenant.Name, bt.tenant.Unavailable)
		}
	}
}

// Issue 10.3: configs validates capability names with its own list (it may
// import nothing from the module); it must be hostabi's list exactly.
func TestConfigCapabilitiesMatchHostabi(t *testing.T) {
	if got, want := configs.CapabilityNames(), hostabi.CapabilityNames(); !slices.Equal(got, want) {
		t.Errorf("configs.CapabilityNames() = %v, want hostabi.CapabilityNames() = %v", got, want)
	}
}

// Issue 10.3: the builder takes a plugin's JWT settings from the typed
// configs.JWT (not from the untyped config map): issuer, audience, leeway,
// and the JWK set from jwks_file, which wins over an inline jwks.
func TestPluginJWTOptionsFromTypedSection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "p.wasm")
	jwksFile := filepath.Join(dir, "jwks.json")
	const fileJWKS = `{"keys":[]}`
	if err := os.WriteFile(wasm, []byte(emptyModule), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwksFile, []byte(fileJWKS), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret") // the secret jwt.secrets names
	if err := os.WriteFile(secretFile, []byte("tenant-jwt-secret-0123456789abcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, jwt string
		want      hostabi.JWTOptions
	}{
		{"none", "", hostabi.JWTOptions{}},
		{"typed", "{issuer: https://id.example, audience: app, leeway: 45s, secrets: [main]}",
			hostabi.JWTOptions{Issuer: "https://id.example", Audience: "app", Leeway: 45 * time.Second, HMACSecrets: []string{"main"}}},
		{"inline jwks", "{jwks: {keys: [{kty: EC}]}}", hostabi.JWTOptions{JWKS: []byte(`{"keys":[{"kty":"EC"}]}`)}},
		{"jwks_file wins", "{jwks: {keys: [{kty: EC}]}, jwks_file: " + jwksFile + "}", hostabi.JWTOptions{JWKS: []byte(fileJWKS)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conf := "{cookie: session}"
			if tt.jwt != "" {
				conf = "{cookie: session, jwt: " + tt.jwt + "}"
			}
			y := fmt.Sprintf("data_dir: %s\nemulator: {enabled: true}\ntenants:\n  - name: a\n    hosts: [a.test]\n    plaid: {env: emulator}\n    auth: {plugin: {path: %s, secrets: {main: file:%s}, config: %s}}\n", dir, wasm, secretFile, conf)
			cfg, err := configs.Decode(strings.NewReader(y))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			var got hostabi.JWTOptions
			b := &builder{log: slog.New(slog.DiscardHandler),
				load: func(_ context.Context, o hostabi.PluginOptions) (*hostabi.Plugin, error) {
					got = o.JWT
					return nil, errors.New("not loaded")
				}}
			if _, err := b.plugin(t.Context(), "a", *cfg.Tenants[0].Auth.Plugin, hostabi.KindAuth); err == nil {
				t.Fatal("plugin() = nil error, want the load stub's")
			}
			if got.Issuer != tt.want.Issuer || got.Audience != tt.want.Audience || got.Leeway != tt.want.Leeway || string(got.JWKS) != string(tt.want.JWKS) {
				t.Errorf("JWT options = {%q %q %v %s}, want {%q %q %v %s}", got.Issuer, got.Audience, got.Leeway, got.JWKS,
					tt.want.Issuer, tt.want.Audience, tt.want.Leeway, tt.want.JWKS)
			}
		})
	}
}

// Plugins that leave cpu_share unset share the cores between them (all but
// one, hostabi.DefaultCPUShareAmong), so two spinning plugins cannot hold
// every core; a plugin's own cpu_share is kept as written and not counted.
func TestDefaultCPUShareIsSharedBetweenPlugins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "empty.wasm")
	os.WriteFile(wasm, []byte(emptyModule), 0o600)
	y := fmt.Sprintf("data_dir: %s\nemulator: {enabled: true}\ntenants:\n", dir)
	for _, n := range []string{"a", "b"} {
		y += fmt.Sprintf("  - name: %s\n    hosts: [%s.test]\n    plaid: {env: emulator}\n    auth: {plugin: {path: %s}}\n", n, n, wasm)
	}
	y += fmt.Sprintf("  - name: c\n    hosts: [c.test]\n    plaid: {env: emulator}\n    auth: {plugin: {path: %s, cpu_share: 0.25}}\n", wasm)
	y += fmt.Sprintf("  - name: d\n    hosts: [d.test]\n    plaid: {env: emulator}\n    auth: {api_keys: [{sha256: %s, user: u}]}\n"+
		"    webhook_plugins: [{path: %s}]\n", strings.Repeat("ab", 32), wasm)
	cfg, err := configs.Decode(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]float64{}
	b := &builder{log: slog.New(slog.DiscardHandler),
		load: func(_ context.Context, o hostabi.PluginOptions) (*hostabi.Plugin, error) {
			mu.Lock()
			defer mu.Unlock()
			got[o.Tenant+"/"+o.Kind.String()] = o.CPUShare
			return nil, errors.New("test: not loaded")
		}}
	b.tenants(t.Context(), cfg)
	each := hostabi.DefaultCPUShareAmong(3) // a, b and d's webhook plugin
	want := map[string]float64{"a/auth": each, "b/auth": each, "c/auth": 0.25, "d/event": each}
	if len(got) != len(want) {
		t.Fatalf("plugins loaded: %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s cpu_share = %g, want %g", k, got[k], w)
		}
	}
	if cores := runtime.GOMAXPROCS(0); cores > 1 && 3*each > float64(cores-1)+1e-9 && each > hostabi.MinDefaultCPUShare {
		t.Errorf("three default shares of %g hold more than %d of %d cores", each, cores-1, cores)
	}
}
