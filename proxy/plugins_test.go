package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/internal/testguest"
)

// Guests are built from hostabi/testdata/guests and plugins/examples by
// internal/testguest (cached by source hash across packages and runs), so
// these tests run the Wasm code that is in the tree.
func guestWasm(t *testing.T, name string) []byte { return guestWasmTB(t, name) }

// guestWasmTB returns a test guest or example plugin.
func guestWasmTB(t testing.TB, name string) []byte {
	t.Helper()
	switch name {
	case "jwtauth", "apikey", "pathrule", "webhookfilter":
		return testguest.Wasm(t, "plugins/examples/"+name)
	case "jwtauth-as", "apikey-as", "pathrule-as", "webhookfilter-as": // AssemblyScript ports; skip without npm unless CI=true
		return testguest.WasmAS(t, "plugins/examples-as/"+strings.TrimSuffix(name, "-as")+"/main.ts")
	case "allow-as":
		return testguest.WasmAS(t, "hostabi/testdata/guests-as/allow.ts")
	}
	return testguest.Wasm(t, "hostabi/testdata/guests/"+name)
}

func loadPlugin(t *testing.T, e *hostabi.Engine, tenant, guest string, kind hostabi.Kind, timeout time.Duration) *hostabi.Plugin {
	t.Helper()
	p, err := e.Load(context.Background(), hostabi.PluginOptions{
		Tenant: tenant, Name: guest, Kind: kind, Wasm: guestWasm(t, guest), PoolSize: 2,
		Timeout: timeout, MemoryLimitPages: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func pluginEngine(t *testing.T) *hostabi.Engine {
	t.Helper()
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CacheDir: testguest.CompilationCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func echoUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"user": r.Header.Values("X-Safeclose-User"), "tenant": r.Header.Get("X-Safeclose-Tenant"),
			"role": r.Header.Values("X-Safeclose-Claim-Role"),
		})
	}))
	t.Cleanup(up.Close)
	return up
}

func pluginTenant(name string, p *hostabi.Plugin, upstream, plaidURL string) Tenant {
	return Tenant{
		Name: name, Hosts: []string{name + ".test"}, Upstream: upstream,
		Plaid: PlaidOptions{BaseURL: plaidURL, ClientID: simClientID, Secret: simSecret, ClientName: "T",
			Products: []string{"transactions"}, CountryCodes: []string{"US"}, Language: "en"},
		Auth: &PluginAuth{Plugin: p, Tenant: name},
	}
}

// The same over the Go guest and its AssemblyScript port.
func TestPluginAuthGuardsProxyAndPlaidRoutes(t *testing.T) {
	for _, g := range []string{"allow", "allow-as"} {
		t.Run(g, func(t *testing.T) { testPluginAuthGuards(t, g) })
	}
}

func testPluginAuthGuards(t *testing.T, guest string) {
	t.Parallel()
	eng := pluginEngine(t)
	up := echoUpstream(t)
	allow := loadPlugin(t, eng, "p1", guest, hostabi.KindAuth, 5*time.Second)
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("p1", allow, up.URL, plaidURL)}
	}})

	r := e.do("GET", "p1.test", "/app", "", nil, "X-User", "alice", "X-Role", "admin",
		"X-Safeclose-User", "root", "X-Safeclose-Claim-Role", "superuser")
	if r.status != 200 {
		t.Fatalf("allowed request = %d %s", r.status, r.body)
	}
	var got struct {
		User, Role []string
		Tenant     string
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.User) != "[alice]" || fmt.Sprint(got.Role) != "[admin]" || got.Tenant != "p1" {
		t.Errorf("upstream saw %+v; want only the plugin's identity (spoofed headers stripped)", got)
	}
	if r := e.do("GET", "p1.test", "/app", "", nil, "X-Safeclose-User", "root"); r.status != 401 || r.errCode(t) != "unauthenticated" {
		t.Errorf("no identity = %d %s, want 401", r.status, r.body)
	}
	if r := e.do("GET", "p1.test", "/app", "", nil, "X-User", "blocked"); r.status != 403 || r.errCode(t) != "denied" {
		t.Errorf("denied = %d %s, want 403", r.status, r.body)
	}
	// The Plaid routes use the same authenticator.
	if r := e.do("GET", "p1.test", pathStatus, "", nil, "X-User", "alice"); r.status != 200 {
		t.Errorf("status with plugin identity = %d %s", r.status, r.body)
	}
	if r := e.do("GET", "p1.test", pathStatus, "", nil); r.status != 401 {
		t.Errorf("status without identity = %d %s", r.status, r.body)
	}
}

// rawGet is safe to call from several goroutines (no t.Fatal).
func rawGet(base, host string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest("GET", base+"/app", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

// Guests that loop, panic, exhaust memory or write out of bounds fail
// closed with a generic 503, and a healthy tenant keeps being served.
func TestMisbehavingPluginsFailClosedOthersUnaffected(t *testing.T) {
	t.Parallel()
	eng := pluginEngine(t)
	up := echoUpstream(t)
	bad := map[string][2]string{ // tenant → guest, trigger header
		"loop": {"loop", "X-Loop"}, "panic": {"panic", "X-Panic"}, "oom": {"oom", "X-OOM"}, "oob": {"oob", "X-Any"},
	}
	good := loadPlugin(t, eng, "good", "allow", hostabi.KindAuth, 5*time.Second)
	plugins := map[string]*hostabi.Plugin{}
	for tn, g := range bad {
		timeout := 50 * time.Millisecond
		if g[0] == "oom" {
			timeout = 2 * time.Second
		}
		plugins[tn] = loadPlugin(t, eng, tn, g[0], hostabi.KindAuth, timeout)
	}
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		ts := []Tenant{pluginTenant("good", good, up.URL, plaidURL)}
		for tn, p := range plugins {
			ts = append(ts, pluginTenant(tn, p, up.URL, plaidURL))
		}
		return ts
	}})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var badAnswers atomic.Int64
	for tn, g := range bad {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, body, err := rawGet(e.base, tn+".test", g[1], "1")
				if err != nil {
					t.Errorf("%s: %v", tn, err)
					return
				}
				if st != 503 || !json.Valid([]byte(body)) || containsAny(body, "trap", "panic", "wasm", "timed out") {
					t.Errorf("%s: misbehaving plugin answered %d %s; want a generic 503", tn, st, body)
					return
				}
				badAnswers.Add(1)
			}
		}()
	}
	for i := range 300 {
		st, body, err := rawGet(e.base, "good.test", "X-User", "carol")
		if err != nil || st != 200 {
			t.Fatalf("good tenant request %d = %d %s %v", i, st, body, err)
		}
	}
	close(stop)
	wg.Wait()
	if badAnswers.Load() < int64(len(bad)) {
		t.Errorf("misbehaving tenants answered %d times; want at least one each", badAnswers.Load())
	}
	for tn, reason := range map[string]string{"loop": "timeout", "panic": "trap", "oob": "trap"} {
		if n := testutil.ToFloat64(e.srv.metrics.authFailures.WithLabelValues(tn, reason)); n < 1 {
			t.Errorf("safeclose_auth_failures_total{tenant=%q,reason=%q} = %v, want > 0", tn, reason, n)
		}
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// Reloading (new plugin instance, atomically swapped; the old one closed
// after a grace period) while requests flow drops none of them. These
// requests read no body, so they call the plugin as soon as they are
// routed: the old plugin is closed after reloadMargin alone, the part of
// ReloadGrace that covers them (the whole grace, 16s here, would only make
// the test longer; TestReloadKeepsOldPluginsForBodyReads in cmd/safeclose
// covers the body reads).
func TestReloadUnderLoadDropsNothing(t *testing.T) {
	t.Parallel()
	eng := pluginEngine(t)
	up := echoUpstream(t)
	first := loadPlugin(t, eng, "p1", "allow", hostabi.KindAuth, 5*time.Second)
	var plaidURL string
	e := startEnv(t, envConfig{tenantsFn: func(_, pu string) []Tenant {
		plaidURL = pu
		return []Tenant{pluginTenant("p1", first, up.URL, pu)}
	}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, body, err := rawGet(e.base, "p1.test", "X-User", "alice")
				if err != nil || st != 200 {
					t.Errorf("request during reload = %d %s %v", st, body, err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	old := first
	for range 5 {
		p, err := eng.Load(context.Background(), hostabi.PluginOptions{Tenant: "p1", Name: "allow", Wasm: guestWasm(t, "allow"), PoolSize: 2, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Reload([]Tenant{pluginTenant("p1", p, up.URL, plaidURL)}); err != nil {
			t.Fatal(err)
		}
		o := old
		time.AfterFunc(reloadMargin, func() { o.Close(context.Background()) })
		old = p
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(reloadMargin + 100*time.Millisecond)
	close(stop)
	wg.Wait()
	old.Close(context.Background())
	if ok.Load() == 0 {
		t.Fatal("no request completed")
	}
}

// forwardedByEventPlugin runs ev as tenant t1's webhook plugin with two
// destinations, app and other, links an item for alice, sends bodies as
// Plaid webhooks for it (item_id set), waits until app got one and the
// queue is empty, and returns what each destination received and the item.
func forwardedByEventPlugin(t *testing.T, ev *hostabi.Plugin, bodies ...map[string]any) (map[string][]string, string) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var mu sync.Mutex
	got := map[string][]string{}
	recv := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got[name] = append(got[name], string(b))
			mu.Unlock()
		}))
		t.Cleanup(s.Close)
		return s
	}
	app, other := recv("app"), recv("other")
	e := startEnv(t, envConfig{tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, base[len("http://"):], plaidURL, "", []Destination{
			{Name: "app", URL: app.URL, Secret: secret}, {Name: "other", URL: other.URL, Secret: secret}})
		ts[0].EventPlugins = []*hostabi.Plugin{ev}
		return ts
	}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	for _, body := range bodies {
		body["item_id"] = itemID
		if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "forwarded", func() bool { mu.Lock(); defer mu.Unlock(); return len(got["app"]) >= 1 })
	eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(got), itemID
}

// A tenant's webhook plugin sees the verified event with its item context,
// drops what it does not want and forwards an enriched payload only to the
// destination it names.
func TestWebhookPluginDropsEnrichesForwards(t *testing.T) {
	t.Parallel()
	eng := pluginEngine(t)
	ev := loadPlugin(t, eng, "t1", "event", hostabi.KindEvent, time.Second)
	got, _ := forwardedByEventPlugin(t, ev,
		map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "environment": "sandbox"},
		map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "environment": "sandbox",
			"consent_expiration_time": "2026-12-25T00:00:00Z"})
	if len(got["app"]) != 1 || len(got["other"]) != 0 {
		t.Fatalf("forwards: app %d, other %d; want only the PENDING_EXPIRATION event to app", len(got["app"]), len(got["other"]))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got["app"][0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["webhook_code"] != "PENDING_EXPIRATION" || m["safeclose_user"] != "alice" || m["safeclose_item_state"] != "pending_expiration" {
		t.Errorf("forwarded payload = %s", got["app"][0])
	}
	if containsAny(got["app"][0], "access-sandbox") {
		t.Error("an access token reached the plugin's output")
	}
}

// The shipped webhookfilter example and its AssemblyScript port, end to
// end: the code in drop_codes is dropped, the other event reaches only
// forward_to, as encoding/json writes it (keys sorted) with the item
// context under "safeclose" and never the access token.
func TestWebhookFilterExample(t *testing.T) {
	for _, g := range []string{"webhookfilter", "webhookfilter-as"} {
		t.Run(g, func(t *testing.T) { testWebhookFilterExample(t, g) })
	}
}

func testWebhookFilterExample(t *testing.T, guest string) {
	t.Parallel()
	eng := pluginEngine(t)
	ev, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "t1", Name: guest, Kind: hostabi.KindEvent, Wasm: guestWasm(t, guest), PoolSize: 2,
		Timeout: 5 * time.Second, MemoryLimitPages: 256, Caps: hostabi.Capabilities{Config: true},
		Config: []byte(`{"drop_codes":["SYNC_UPDATES_AVAILABLE"],"forward_to":"app"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close(context.Background()) })
	got, itemID := forwardedByEventPlugin(t, ev,
		map[string]any{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "environment": "sandbox"},
		map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "environment": "sandbox",
			"consent_expiration_time": "2026-12-25T00:00:00Z", "n": 1.50})
	if len(got["app"]) != 1 || len(got["other"]) != 0 {
		t.Fatalf("forwards: app %d, other %d; want only the PENDING_EXPIRATION event to app", len(got["app"]), len(got["other"]))
	}
	want := `{"consent_expiration_time":"2026-12-25T00:00:00Z","environment":"sandbox","item_id":"` + itemID +
		`","n":1.5,"safeclose":{"item_state":"pending_expiration","tenant":"t1","user":"alice"},` +
		`"webhook_code":"PENDING_EXPIRATION","webhook_type":"ITEM"}`
	if got["app"][0] != want {
		t.Errorf("forwarded payload = %s, want %s", got["app"][0], want)
	}
	if containsAny(got["app"][0], "access-sandbox") {
		t.Error("an access token reached the plugin's output")
	}
}

// mintHS256 signs a minimal session JWT.
func mintHS256(key []byte, sub string, exp time.Time) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q,"exp":%d}`, sub, exp.Unix())))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(h + "." + p))
	return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
