package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// readyz is the decoded /readyz body.
type readyz struct {
	Ready   bool              `json:"ready"`
	Checks  map[string]string `json:"checks"`
	Tenants map[string]struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	} `json:"tenants"`
}

func getReadyz(t *testing.T, e *testEnv, query string) (int, readyz, string) {
	t.Helper()
	admin := httptest.NewServer(e.srv.AdminHandler())
	defer admin.Close()
	res, err := http.Get(admin.URL + "/readyz" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var r readyz
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("/readyz body %q: %v", b, err)
	}
	return res.StatusCode, r, string(b)
}

// deadURL is an address nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// Issue 9.16: /readyz said ready without a sealing key, although the README
// says it checks the key; exchanges would then remove every item at Plaid.
func TestReadyzChecksSealingKey(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{noKey: true})
	st, r, body := getReadyz(t, e, "")
	if st != http.StatusServiceUnavailable || r.Ready || r.Checks["sealing_key"] != "no_key" {
		t.Errorf("/readyz without a key = %d %s; want 503 with sealing_key no_key", st, body)
	}
	if r.Checks["store"] != "ok" {
		t.Errorf("/readyz store check = %q, want ok: %s", r.Checks["store"], body)
	}

	ok := startEnv(t, envConfig{})
	st, r, body = getReadyz(t, ok, "")
	if st != http.StatusOK || !r.Ready || r.Checks["sealing_key"] != "ok" || r.Checks["store"] != "ok" {
		t.Errorf("/readyz with a key = %d %s; want 200, store and sealing_key ok", st, body)
	}
	for _, name := range []string{"t1", "t2"} {
		if tn := r.Tenants[name]; !tn.Ready || tn.Checks["plaid"] != "ok" {
			t.Errorf("tenant %s = %+v, want ready with plaid ok", name, tn)
		}
	}
}

// Issue 9.16: one tenant's Plaid outage made the whole process not ready, so
// a load balancer took every tenant out. Only that tenant is marked.
func TestReadyzPlaidOutageIsPerTenant(t *testing.T) {
	t.Parallel()
	dead := deadURL(t)
	e := startEnv(t, envConfig{tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
		ts[1].Plaid.BaseURL = dead
		return ts
	}})
	st, r, body := getReadyz(t, e, "")
	if st != http.StatusOK || !r.Ready {
		t.Fatalf("/readyz with t2's Plaid down = %d %s; want 200", st, body)
	}
	if tn := r.Tenants["t2"]; tn.Ready || tn.Checks["plaid"] != "unreachable" {
		t.Errorf("t2 = %+v, want not ready, plaid unreachable", tn)
	}
	if tn := r.Tenants["t1"]; !tn.Ready {
		t.Errorf("t1 = %+v, want ready", tn)
	}
	if st, _, body := getReadyz(t, e, "?tenant=t2"); st != http.StatusServiceUnavailable {
		t.Errorf("/readyz?tenant=t2 = %d %s, want 503", st, body)
	}
	if st, _, body := getReadyz(t, e, "?tenant=t1"); st != http.StatusOK {
		t.Errorf("/readyz?tenant=t1 = %d %s, want 200", st, body)
	}
	admin := httptest.NewServer(e.srv.AdminHandler())
	defer admin.Close()
	if res, err := http.Get(admin.URL + "/readyz?tenant=nope"); err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("/readyz?tenant=nope = %v %v, want 404", res, err)
	}
}

// Issue 9.15: a tenant whose plugin could not be loaded no longer stops the
// proxy: it fails closed (503 tenant_unavailable on every route, the webhook
// included, so Plaid retries) and /readyz names the reason class, while the
// other tenants serve.
func TestUnavailableTenantFailsClosed(t *testing.T) {
	t.Parallel()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer app.Close()
	e := startEnv(t, envConfig{upstream: app.URL, tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, app.URL, nil)
		ts[1] = Tenant{Name: "t2", Hosts: ts[1].Hosts, Unavailable: &Unavailability{Reason: "plugin_refused", Field: "tenants[1].auth.plugin"}}
		return ts
	}})
	for _, c := range []struct{ method, path string }{
		{"GET", "/anything"}, {"POST", pathLinkToken}, {"GET", pathStatus}, {"POST", pathWebhook},
	} {
		r := e.do(c.method, "t2.test", c.path, "carol-key", nil)
		if r.status != http.StatusServiceUnavailable || r.errCode(t) != "tenant_unavailable" {
			t.Errorf("%s %s on the broken tenant = %d %s, want 503 tenant_unavailable", c.method, c.path, r.status, r.body)
		}
	}
	if r := e.do("GET", "t1.test", "/x", "alice-key", nil); r.status != 200 || string(r.body) != "app" {
		t.Errorf("healthy tenant = %d %s, want 200 app", r.status, r.body)
	}
	st, r, body := getReadyz(t, e, "")
	if st != http.StatusOK || !r.Ready {
		t.Errorf("/readyz = %d %s, want 200 (another tenant serves)", st, body)
	}
	if tn := r.Tenants["t2"]; tn.Ready || tn.Checks["plugins"] != "plugin_refused (tenants[1].auth.plugin)" {
		t.Errorf("t2 in /readyz = %+v, want not ready with the reason", tn)
	}
}

// Issue 9.17: fasthttp's server limit is the larger of the two body limits,
// so a proxied request up to the webhook limit reached the upstream.
// limits.max_body_bytes applies to proxied routes: 413 body_too_large.
func TestProxiedBodyLimit(t *testing.T) {
	t.Parallel()
	var got atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(int64(len(b)))
	}))
	defer app.Close()
	e := startEnv(t, envConfig{upstream: app.URL, maxBody: 1024, webhookOpt: WebhookOptions{MaxBodyBytes: 64 << 10}})
	if r := e.do("POST", "t1.test", "/upload", "alice-key", bytes.Repeat([]byte("a"), 1024)); r.status != 200 || got.Load() != 1024 {
		t.Errorf("1024-byte body = %d (upstream got %d), want 200", r.status, got.Load())
	}
	got.Store(-1)
	r := e.do("POST", "t1.test", "/upload", "alice-key", bytes.Repeat([]byte("a"), 4096))
	if r.status != http.StatusRequestEntityTooLarge || r.errCode(t) != "body_too_large" || got.Load() != -1 {
		t.Errorf("4096-byte body = %d %s (upstream got %d), want 413 body_too_large and nothing forwarded", r.status, r.body, got.Load())
	}
}
