package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 9.4: the shipped pathrule plugin and the upstream see the same
// normalised path, so /public/../admin and its encoded variants never reach
// /admin as allowed. The same over the shipped Go plugin and its
// AssemblyScript port (both built from the tree).
func TestPathRuleSeesNormalisedPath(t *testing.T) {
	for _, g := range []string{"pathrule", "pathrule-as"} {
		t.Run(g, func(t *testing.T) { testPathRuleSeesNormalisedPath(t, g) })
	}
}

func testPathRuleSeesNormalisedPath(t *testing.T, guest string) {
	t.Parallel()
	eng := pluginEngine(t)
	p, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "pr", Name: guest, Kind: hostabi.KindAuth, Wasm: guestWasm(t, guest),
		PoolSize: 1, Timeout: 5 * time.Second, MemoryLimitPages: 256,
		Config: []byte(`{"allow_cidrs":["127.0.0.0/8"],"allow_paths":["/public/"]}`),
		Caps:   hostabi.Capabilities{Config: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("pr", p, upURL, plaidURL)}
	}})

	tests := []struct {
		target string
		status int
		code   string // error code when refused
		up     string // what the upstream saw when allowed
	}{
		{target: "/public/x", status: 200, up: "/public/x"},
		{target: "/public/./a/../b?q=/../%2e%2e&r", status: 200, up: "/public/b?q=/../%2e%2e&r"},
		{target: "/public/%7Euser/%41", status: 200, up: "/public/~user/A"},
		{target: "//public///x//", status: 200, up: "/public/x/"},
		{target: "http://pr.test/public/../public/y", status: 200, up: "/public/y"},
		{target: "/public/../admin", status: 403, code: "denied"},
		{target: "/public//../admin", status: 403, code: "denied"},
		{target: "/public/a/../../admin", status: 403, code: "denied"},
		{target: "/public/%2e%2e/admin", status: 400, code: "invalid_path"},
		{target: "/public/.%2E/admin", status: 400, code: "invalid_path"},
		{target: "/public/%2E./admin", status: 400, code: "invalid_path"},
		{target: "/public/..%2Fadmin", status: 400, code: "invalid_path"},
		{target: "/public/..%2fadmin", status: 400, code: "invalid_path"},
		{target: "/public/..%5Cadmin", status: 400, code: "invalid_path"},
		{target: "/public\\..\\admin", status: 400, code: "invalid_path"},
		{target: "/public/..;/admin", status: 400, code: "invalid_path"},
		{target: "/public/%00/x", status: 400, code: "invalid_path"},
		{target: "/public/%0d%0a/x", status: 400, code: "invalid_path"},
		{target: "*", status: 400, code: "invalid_path"},
	}
	for _, tt := range tests {
		before, _, _ := rec.seen()
		res, body := rawDo(t, e.addr, "GET "+tt.target+" HTTP/1.1\r\nHost: pr.test\r\nConnection: close\r\n\r\n")
		hits, uri, _ := rec.seen()
		if res.StatusCode != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.target, res.StatusCode, body, tt.status)
			continue
		}
		if tt.status != 200 {
			if c := errCodeOf(t, body); c != tt.code && (tt.target != "*" || c != "malformed_request") {
				t.Errorf("GET %s: code %q, want %q", tt.target, c, tt.code)
			}
			if hits != before {
				t.Errorf("GET %s: refused request reached the upstream as %s", tt.target, uri)
			}
			continue
		}
		if hits != before+1 || uri != tt.up {
			t.Errorf("GET %s: upstream saw %q (hits %d→%d), want %q", tt.target, uri, before, hits, tt.up)
		}
	}
}

// Issue 9.4: the four Safeclose routes match on the normalised path.
func TestOwnRoutesMatchNormalisedPath(t *testing.T) {
	t.Parallel()
	rec, upURL := newRecorder(t)
	e := startEnv(t, envConfig{upstream: upURL})
	for _, target := range []string{
		"/api/plaid/status", "/api/plaid/../plaid/status", "/api//plaid/status", "/api/plaid/%73tatus", "/x/../api/plaid/./status",
	} {
		res, body := rawDo(t, e.addr, "GET "+target+" HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\nConnection: close\r\n\r\n")
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s = %d %s, want the status route", target, res.StatusCode, body)
		}
	}
	if hits, uri, _ := rec.seen(); hits != 0 {
		t.Errorf("a Safeclose route was proxied to the upstream as %s", uri)
	}
}
