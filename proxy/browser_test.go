package proxy

// The browser side (a cross-site attacker, a hostile sibling subdomain),
// from a review of 2026-12-08. These tests model a victim whose browser
// holds the tenant's session cookie; cookieSessionAuth stands in for the
// tenant's auth plugin (jwtauth reads the same kind of cookie), so the
// proxy sees exactly what a browser's ambient credential looks like.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	plaid "github.com/plaid/plaid-go/v29/plaid"
	"github.com/valyala/fasthttp"
)

// cookieSessionAuth authenticates "Cookie: session=<value>" by a fixed
// table, like a cookie-reading auth plugin would.
type cookieSessionAuth map[string]string

func (a cookieSessionAuth) Authenticate(_ context.Context, ctx *fasthttp.RequestCtx) (Identity, error) {
	if u, ok := a[string(ctx.Request.Header.Cookie("session"))]; ok {
		return Identity{Subject: u}, nil
	}
	return Identity{}, ErrUnauthenticated
}

// cookieTenants is one tenant, t1, with a cookie session ("victim-session"
// is alice), answering t1.test and 127.0.0.1 (the emulator's webhooks).
func cookieTenants(addr string) func(base, plaidURL string) []Tenant {
	return func(base, plaidURL string) []Tenant {
		port := addr[strings.LastIndexByte(addr, ':'):]
		_ = base
		return []Tenant{{
			Name: "t1", Hosts: []string{"t1.test", "127.0.0.1"},
			Plaid: PlaidOptions{
				BaseURL: plaidURL, ClientID: simClientID, Secret: simSecret, ClientName: "Safeclose Test",
				Products: []string{"transactions"}, CountryCodes: []string{"US"}, Language: "en",
				WebhookURL: "http://127.0.0.1" + port + pathWebhook,
			},
			Auth: cookieSessionAuth{"victim-session": "alice"},
		}}
	}
}

// sameOrigin is what the tenant's own page sends (fetch from t1.test).
var sameOrigin = []string{"Cookie", "session=victim-session", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors"}

// GET /api/plaid/status was exempt from the cross-origin check, yet it is
// not free of side effects: for every item in login_required it calls Plaid's
// /item/get (refreshLogin) and spends one unit of the user's Plaid budget
// (limits.plaid_calls_per_user). A page on evil.example (cookie
// SameSite=None) or on a sibling subdomain (SameSite=Lax cookies go with
// same-site subresource requests) embeds the status URL as <img> tags;
// each load carries the victim's cookie, is authenticated, and spends the
// victim's budget. Precisely when the victim's bank needs re-login, the
// app's "Reconnect" (POST link-token {"item_id"}) then answers 429
// rate_limited: a cross-site denial of the one action that repairs the
// item, renewable for as long as the victim keeps the attacker's page open.
func TestCrossSiteStatusSpendsNoPlaidBudget(t *testing.T) {
	t.Parallel()
	const perMinute = 10
	var e *testEnv
	var addr string
	e = startEnv(t, envConfig{
		tenantsFn: func(base, plaidURL string) []Tenant {
			addr = strings.TrimPrefix(base, "http://")
			return cookieTenants(addr)(base, plaidURL)
		},
		optsFn: func(o *Options) { o.PlaidCallsPerUser = perMinute },
	})

	// The victim links a bank from the app's own page.
	r := e.do("POST", "t1.test", pathLinkToken, "", []byte(`{}`), sameOrigin...)
	if r.status != 200 {
		t.Fatalf("link-token = %d %s", r.status, r.body)
	}
	tok, _ := r.json(t)["link_token"].(string)
	pub, err := e.sim.CompleteLink(tok, "ins_109508", "user_good")
	if err != nil {
		t.Fatal(err)
	}
	r = e.do("POST", "t1.test", pathExchange, "", []byte(`{"public_token":"`+pub+`","link_token":"`+tok+`"}`), sameOrigin...)
	if r.status != 200 {
		t.Fatalf("exchange = %d %s", r.status, r.body)
	}
	itemID, _ := r.json(t)["item_id"].(string)

	// The bank asks for a new login; the webhook marks the item.
	at, err := e.db.AccessToken("t1", "alice", itemID)
	if err != nil {
		t.Fatal(err)
	}
	pc := newPlaidClient(PlaidOptions{BaseURL: e.simTS.URL, ClientID: simClientID, Secret: simSecret}, http.DefaultClient)
	if _, _, err := pc.api.PlaidApi.SandboxItemResetLogin(t.Context()).
		SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatalf("sandbox/item/reset_login: %v", err)
	}
	eventually(t, "login_required", func() bool {
		it, err := e.db.Item("t1", itemID)
		return err == nil && it.State == "login_required"
	})

	// The attacker's page: <img src="https://t1.test/api/plaid/status"> ×N.
	crossSite := []string{"Cookie", "session=victim-session", "Sec-Fetch-Site", "cross-site",
		"Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image", "Referer", "https://evil.example/"}
	for i := 0; i < 3*perMinute; i++ {
		if r := e.do("GET", "t1.test", pathStatus, "", nil, crossSite...); r.status != 403 || !strings.Contains(string(r.body), "cross_origin") {
			t.Fatalf("cross-site status = %d %s, want 403 cross_origin", r.status, r.body)
		}
	}

	// The victim clicks "Reconnect" in the app.
	r = e.do("POST", "t1.test", pathLinkToken, "", []byte(`{"item_id":"`+itemID+`"}`), sameOrigin...)
	if r.status != 200 {
		t.Fatalf("after a cross-site page loaded /api/plaid/status %d times, the victim's own update-mode link-token = %d %s; "+
			"want 200 (cross-site requests must not spend the user's Plaid budget)", 3*perMinute, r.status, r.body)
	}
}

// Safeclose's own JSON answers (the /api/plaid/* routes, and every error
// it writes for proxied routes: 401, 403, 502…) carry
// X-Content-Type-Options: nosniff (errors.go jsonHeader). The demo
// app sets it "on every answer" (README), but those answers on the app's
// origin come from Safeclose, not the app. Error bodies echo client input
// (unknown_field names the attacker's key); encoding/json escapes < > &,
// and browsers do not sniff application/json into HTML, so this is not
// exploitable today, but nosniff is what makes ORB/CORB and script/style
// loads refuse the answers unconditionally.
func TestOwnJSONAnswersNosniff(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	cases := []struct {
		name, method, path, key string
		body                    []byte
		hdr                     []string
	}{
		{"status 200", "GET", pathStatus, "alice-key", nil, nil},
		{"status 401", "GET", pathStatus, "", nil, nil},
		{"link-token 403 cross_origin", "POST", pathLinkToken, "alice-key", []byte(`{}`), []string{"Sec-Fetch-Site", "cross-site"}},
		{"link-token 400 unknown_field echo", "POST", pathLinkToken, "alice-key", []byte(`{"<b>x</b>":1}`), nil},
	}
	for _, c := range cases {
		r := e.do(c.method, "t1.test", c.path, c.key, c.body, c.hdr...)
		if got := r.hdr.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: %d, X-Content-Type-Options = %q, want nosniff (body %s)", c.name, r.status, got, r.body)
		}
	}
}

// The edges the browser-side review tried and found sound: the
// cross-origin check's Origin and Sec-Fetch-Site cases, no CORS grant, no
// shared caching, escaped echoes, methods refused before authentication,
// and a link token kept to its tenant.
func TestBrowserOriginEdges(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	post := []struct {
		name   string
		host   string
		hdr    []string
		status int
	}{
		{"origin differing port", "t1.test", []string{"Origin", "http://t1.test:8443"}, 403},
		{"origin trailing dot", "t1.test", []string{"Origin", "http://t1.test."}, 403},
		{"origin sibling", "t1.test", []string{"Origin", "https://evil.t1.test"}, 403},
		{"origin suffix trick", "t1.test", []string{"Origin", "https://t1.test.evil.example"}, 403},
		{"origin without scheme", "t1.test", []string{"Origin", "t1.test"}, 403},
		{"origin with path", "t1.test", []string{"Origin", "https://evil.test/t1.test"}, 403},
		{"origin null form", "t1.test", []string{"Origin", "null", "Content-Type", "application/x-www-form-urlencoded"}, 403},
		{"unknown fetch-site", "t1.test", []string{"Sec-Fetch-Site", "Same-Origin"}, 403},
		{"fetch-site cross, origin same", "t1.test", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://t1.test"}, 403},
		{"origin case", "T1.TEST", []string{"Origin", "http://t1.test"}, 200},
		{"origin with port same", "t1.test:8080", []string{"Origin", "http://t1.test:8080"}, 200},
	}
	for _, c := range post {
		r := e.do("POST", c.host, pathLinkToken, "alice-key", []byte(`{}`), c.hdr...)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
	}
	// A CORS preflight never reaches anything and grants nothing.
	r := e.do("OPTIONS", "t1.test", pathExchange, "", nil, "Origin", "https://evil.test",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if r.status != 405 || r.hdr.Get("Access-Control-Allow-Origin") != "" || r.hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", r.status, r.hdr)
	}
	// Status: no CORS grant, not storable by a shared cache.
	r = e.do("GET", "t1.test", pathStatus, "alice-key", nil, "Origin", "https://evil.test", "Sec-Fetch-Site", "cross-site")
	if r.hdr.Get("Access-Control-Allow-Origin") != "" || r.hdr.Get("Cache-Control") != "no-store" ||
		r.hdr.Get("Content-Type") != "application/json" {
		t.Errorf("status headers: %v", r.hdr)
	}
	// Errors: no-store too; the echoed key is JSON-escaped.
	r = e.do("POST", "t1.test", pathLinkToken, "alice-key", []byte(`{"<script>":1}`))
	if r.hdr.Get("Cache-Control") != "no-store" || string(r.body) == "" || strings.ContainsAny(string(r.body), "<>") {
		t.Errorf("error answer: %v %s", r.hdr, r.body)
	}
	// HEAD and GET on the POST routes, POST on status: 405 before auth.
	for _, m := range [][2]string{{"GET", pathLinkToken}, {"GET", pathExchange}, {"POST", pathStatus}} {
		if r := e.do(m[0], "t1.test", m[1], "alice-key", nil); r.status != 405 {
			t.Errorf("%s %s = %d", m[0], m[1], r.status)
		}
	}
	// Another tenant's host: a link token of t1 is not t2's.
	r = e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	tok, _ := r.json(t)["link_token"].(string)
	pub, err := e.sim.CompleteLink(tok, "ins_109508", "user_good")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "t2.test", pathExchange, "carol-key", []byte(`{"public_token":"`+pub+`","link_token":"`+tok+`"}`)); r.status != 403 {
		t.Errorf("cross-tenant exchange = %d %s", r.status, r.body)
	}
}
