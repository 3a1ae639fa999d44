package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestHandler(t *testing.T, o Options) http.Handler {
	t.Helper()
	if o.SessionKey == nil {
		o.SessionKey = []byte(strings.Repeat("k", 32))
	}
	h, err := newHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func do(h http.Handler, method, path, body string, hdr ...string) *http.Response {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestSignin(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	h := newTestHandler(t, Options{SessionKey: key, Now: func() time.Time { return now }})
	for _, body := range []string{`{"user":"Alice"}`, `{"user":"anonymous"}`, `{"user":""}`, `{"user":"a b"}`, `nope`} {
		if res := do(h, "POST", "/signin", body); res.StatusCode != http.StatusBadRequest || len(res.Cookies()) != 0 {
			t.Errorf("POST /signin %s = %d with %d cookies, want 400 and none", body, res.StatusCode, len(res.Cookies()))
		}
	}
	res := do(h, "POST", "/signin", `{"user":"alice"}`)
	cs := res.Cookies()
	if res.StatusCode != http.StatusOK || len(cs) != 1 || cs[0].Name != "session" || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("POST /signin = %d %+v", res.StatusCode, cs)
	}
	// The cookie is an HS256 JWT over the session key with what the
	// plugin's jwt config checks.
	parts := strings.Split(cs[0].Value, ".")
	if len(parts) != 3 {
		t.Fatalf("session = %q, want a compact JWT", cs[0].Value)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if sig, _ := base64.RawURLEncoding.DecodeString(parts[2]); !hmac.Equal(sig, m.Sum(nil)) {
		t.Error("session JWT is not signed with the session key")
	}
	var claims map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != "alice" || claims["iss"] != "safeclose-webapp" || claims["aud"] != "webapp" ||
		claims["exp"] != float64(now.Add(8*time.Hour).Unix()) {
		t.Errorf("claims = %v", claims)
	}
	if res := do(h, "POST", "/signout", ""); len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge >= 0 {
		t.Errorf("POST /signout cookies = %+v, want the session cleared", res.Cookies())
	}
}

// The app trusts Safeclose's identity headers, and treats the auth
// plugin's signed-out pass to a public route as signed out.
func TestMe(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, Options{})
	tests := []struct {
		name string
		hdr  []string
		want int
	}{
		{"signed in", []string{"X-Safeclose-User", "alice"}, 200},
		{"public pass", []string{"X-Safeclose-User", "anonymous", "X-Safeclose-Claim-Public", "true"}, 401},
		{"no identity", nil, 401},
	}
	for _, tt := range tests {
		if res := do(h, "GET", "/api/me", "", tt.hdr...); res.StatusCode != tt.want {
			t.Errorf("%s: GET /api/me = %d, want %d", tt.name, res.StatusCode, tt.want)
		}
	}
}

func TestIndexLinkScript(t *testing.T) {
	t.Parallel()
	page := func(o Options) string {
		res := do(newTestHandler(t, o), "GET", "/", "")
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if p := page(Options{}); strings.Contains(p, plaidLinkCDN) || strings.Contains(p, "<script src=\"http") {
		t.Errorf("production page mentions a Link script:\n%s", p)
	}
	const emu = "http://127.0.0.1:8099/__emu/link/v2/stable/link-initialize.js"
	p := page(Options{LinkScript: emu})
	i, j, k := strings.Index(p, `<script src="`+emu+`">`), strings.Index(p, `<script type="text/plain" src="`+plaidLinkCDN+`"`), strings.Index(p, `src="/app.js"`)
	if i < 0 || j < i || k < j {
		t.Errorf("dev page: emulator script at %d, CDN placeholder at %d, bundle at %d; want them in that order:\n%s", i, j, k, p)
	}
	if _, err := newHandler(Options{SessionKey: []byte("short")}); err == nil {
		t.Error("newHandler accepted a short session key")
	}
}

// Login CSRF: another site's page auto-submits a form (enctype text/plain,
// so the body is JSON-shaped: {"user":"mallory","x":"="}) to /signin. The
// answer is a top-level navigation, so the browser keeps its SameSite=Lax
// cookie: the victim is signed in as the attacker, and the bank they then
// connect is the attacker's item. Cross-origin POSTs are refused; the
// app's own fetches (same-origin) and non-browser clients still work.
func TestCrossOriginPostsRefused(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, Options{})
	const csrf = `{"user":"mallory","x":"="}`
	tests := []struct {
		name, path, body string
		hdr              []string
		want             int
	}{
		{"signin cross-site form", "/signin", csrf, []string{"Content-Type", "text/plain", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.test"}, http.StatusForbidden},
		{"signin sibling subdomain", "/signin", csrf, []string{"Sec-Fetch-Site", "same-site", "Origin", "https://evil.example.com"}, http.StatusForbidden},
		{"signin foreign origin, no fetch metadata", "/signin", csrf, []string{"Origin", "https://evil.test"}, http.StatusForbidden},
		{"signout cross-site form", "/signout", "", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.test"}, http.StatusForbidden},
		{"signin same-origin fetch", "/signin", `{"user":"alice"}`, []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://example.com"}, http.StatusOK},
		{"signin not a browser", "/signin", `{"user":"alice"}`, nil, http.StatusOK},
	}
	for _, tt := range tests {
		res := do(h, "POST", tt.path, tt.body, tt.hdr...)
		if res.StatusCode != tt.want {
			t.Errorf("%s: POST %s = %d, want %d", tt.name, tt.path, res.StatusCode, tt.want)
		}
		if tt.want == http.StatusForbidden && len(res.Cookies()) != 0 {
			t.Errorf("%s: POST %s set cookies %+v", tt.name, tt.path, res.Cookies())
		}
	}
}

// The app's page cannot be framed by another site (clickjacking "Connect
// a bank" or "Reconnect"), runs only its own scripts and Plaid's (an
// injected <script> from anywhere else does not run), and nothing the app
// answers is content-sniffed.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	const emu = "http://127.0.0.1:8099/__emu/link/v2/stable/link-initialize.js"
	for _, o := range []Options{{}, {LinkScript: emu}} {
		h := newTestHandler(t, o)
		res := do(h, "GET", "/", "")
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "script-src 'self' " + plaidCDNOrigin, "object-src 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("LinkScript %q: GET / Content-Security-Policy = %q, want it to hold %q", o.LinkScript, csp, want)
			}
		}
		if o.LinkScript != "" && !strings.Contains(csp, " "+emu) {
			t.Errorf("dev page CSP = %q, want the emulator's script allowed", csp)
		}
		if got := res.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET / X-Frame-Options = %q, want DENY", got)
		}
		for _, path := range []string{"/", "/api/me"} {
			if got := do(h, "GET", path, "").Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("GET %s X-Content-Type-Options = %q, want nosniff", path, got)
			}
		}
	}
}
