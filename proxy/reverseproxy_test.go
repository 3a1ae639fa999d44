package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestReverseProxyIdentityHeaders(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Keep-Alive", "timeout=5")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.RequestURI(), "method": r.Method, "host": r.Host,
			"user": r.Header.Values("X-Safeclose-User"), "tenant": r.Header.Get("X-Safeclose-Tenant"),
			"xff": r.Header.Get("X-Forwarded-For"), "xfh": r.Header.Get("X-Forwarded-Host"),
			"proxy_auth": r.Header.Get("Proxy-Authorization"), "custom": r.Header.Get("X-Custom"),
			"spoof_claim": r.Header.Get("X-Safeclose-Claim-Role"), "conn_named": r.Header.Get("X-Hop"),
		})
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})

	r := e.do("GET", "t1.test", "/app/orders?id=7", "alice-key", nil,
		"X-Safeclose-User", "mallory", "x-safeclose-claim-role", "admin", "Proxy-Authorization", "secret",
		"X-Custom", "kept", "Connection", "X-Hop", "X-Hop", "hop")
	if r.status != 200 {
		t.Fatalf("proxied = %d %s", r.status, r.body)
	}
	var got struct {
		Path, Method, Host, Tenant, XFF, XFH, Custom string
		User                                         []string
		ProxyAuth                                    string `json:"proxy_auth"`
		SpoofClaim                                   string `json:"spoof_claim"`
		ConnNamed                                    string `json:"conn_named"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.User) != 1 || got.User[0] != "alice" {
		t.Errorf("X-Safeclose-User = %v, want [alice] (client copy stripped)", got.User)
	}
	if got.SpoofClaim != "" || got.ProxyAuth != "" || got.ConnNamed != "" {
		t.Errorf("stripped headers reached upstream: claim=%q proxy-auth=%q conn-named=%q", got.SpoofClaim, got.ProxyAuth, got.ConnNamed)
	}
	if got.Tenant != "t1" || got.Path != "/app/orders?id=7" || got.Custom != "kept" || got.XFF != "127.0.0.1" || got.XFH != "t1.test" {
		t.Errorf("upstream saw %+v", got)
	}
	if r.hdr.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response header Keep-Alive forwarded")
	}

	before := hits.Load()
	for _, key := range []string{"", "wrong"} {
		r = e.do("GET", "t1.test", "/app/orders", key, nil, "X-Safeclose-User", "alice")
		if r.status != 401 || r.errCode(t) != "unauthenticated" {
			t.Errorf("unauthenticated proxy request = %d %s", r.status, r.body)
		}
	}
	if hits.Load() != before {
		t.Errorf("unauthenticated requests reached the upstream")
	}
}

func TestReverseProxyUpstreamDown(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.NotFoundHandler())
	url := up.URL
	up.Close()
	e := startEnv(t, envConfig{upstream: url})
	r := e.do("GET", "t1.test", "/x", "alice-key", nil)
	if r.status != 502 || r.errCode(t) != "upstream_unavailable" {
		t.Errorf("dead upstream = %d %s, want 502", r.status, r.body)
	}
}

func TestNoUpstreamConfigured(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.do("GET", "t1.test", "/anything", "alice-key", nil)
	if r.status != 404 || r.errCode(t) != "not_found" {
		t.Errorf("no upstream = %d %s", r.status, r.body)
	}
}
