package hostabi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

func signHS256(key []byte, claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	s := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// The Go examples and their AssemblyScript ports (plugins/examples-as) give
// the same answers.
func TestExampleJWTAuth(t *testing.T) {
	for _, g := range []string{"jwtauth", "jwtauth-as"} {
		t.Run(g, func(t *testing.T) { testExampleJWTAuth(t, g) })
	}
}

func testExampleJWTAuth(t *testing.T, guest string) {
	e := newEngine(t)
	key := []byte("tenant-jwt-secret-0123456789abcd")
	p := load(t, e, guest, hostabi.PluginOptions{
		Config:  []byte(`{"cookie":"sess","claims":["email"]}`),
		Caps:    hostabi.Capabilities{Config: true, Crypto: true, Log: true},
		Secrets: map[string][]byte{"main": key},
		JWT:     hostabi.JWTOptions{Audience: "app"},
	})
	exp := time.Now().Add(time.Hour).Unix()
	good := signHS256(key, map[string]any{"sub": "alice", "email": "a@example.com", "aud": "app", "exp": exp})
	// Cookie tossing: a sibling subdomain (another tenant, or any XSS on
	// the registrable domain) sets sess=MALLORY with Domain= the parent and
	// a longer Path; the browser sends it first, beside the victim's own.
	mallory := signHS256(key, map[string]any{"sub": "mallory", "email": "m@example.com", "aud": "app", "exp": exp})
	tests := []struct {
		name    string
		headers [][2]string
		allow   bool
	}{
		{"bearer", hdr("Authorization", "Bearer "+good), true},
		{"cookie", hdr("Cookie", "x=1; sess="+good), true},
		{"bearer scheme any case", hdr("Authorization", "bEaReR  "+good+" "), true},
		// The first of several values counts (the SDKs cut the list at
		// its first NUL; one value is returned whole).
		{"two Authorization headers, the bearer first", hdr("Authorization", "Bearer "+good, "Authorization", "Basic x"), true},
		{"two Authorization headers, the bearer second", hdr("Authorization", "Basic x", "Authorization", "Bearer "+good), false},
		{"none", nil, false},
		{"bad token", hdr("Authorization", "Bearer not.a.jwt"), false},
		{"other scheme", hdr("Authorization", "Basic "+good), false},
		{"cookie with another name", hdr("Cookie", "session="+good), false},
		{"two sess cookies, another user's first", hdr("Cookie", "sess="+mallory+"; x=1; sess="+good), false},
		{"two sess cookies in two headers", hdr("Cookie", "sess="+mallory, "Cookie", "sess="+good), false},
		{"the same sess cookie twice", hdr("Cookie", "sess="+good+"; sess="+good), true},
		{"wrong key", hdr("Authorization", "Bearer "+signHS256([]byte("other"), map[string]any{"sub": "alice", "aud": "app", "exp": exp})), false},
		{"expired", hdr("Authorization", "Bearer "+signHS256(key, map[string]any{"sub": "alice", "aud": "app", "exp": 1000})), false},
		{"wrong audience", hdr("Authorization", "Bearer "+signHS256(key, map[string]any{"sub": "alice", "aud": "x", "exp": exp})), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := p.Authenticate(context.Background(), &req{headers: tt.headers})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow {
				t.Fatalf("Allow = %v (%+v), want %v", d.Allow, d, tt.allow)
			}
			if tt.allow && (d.Subject != "alice" || claims(d)["email"] != "a@example.com") {
				t.Errorf("identity = %+v", d)
			}
			if !tt.allow && d.Status != 401 {
				t.Errorf("Status = %d, want 401", d.Status)
			}
		})
	}
}

func TestExampleAPIKey(t *testing.T) {
	for _, g := range []string{"apikey", "apikey-as"} {
		t.Run(g, func(t *testing.T) { testExampleAPIKey(t, g) })
	}
}

func testExampleAPIKey(t *testing.T, guest string) {
	e := newEngine(t)
	digest := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	keys := fmt.Sprintf(`{%q:"alice",%q:"bob",%q:"carol",%q:"upper"}`, digest("k-alice"), digest("k-bob"), digest("k-carol"),
		strings.ToUpper(digest("k-upper")))
	p := load(t, e, guest, hostabi.PluginOptions{
		Config: []byte(`{"header":"X-API-Key","keys":` + keys + `}`),
		Caps:   hostabi.Capabilities{Config: true, Crypto: true},
	})
	bearer := load(t, e, guest, hostabi.PluginOptions{Tenant: "t2",
		Config: []byte(`{"keys":` + keys + `}`), Caps: hostabi.Capabilities{Config: true, Crypto: true}})
	for _, tc := range []struct {
		p       *hostabi.Plugin
		headers [][2]string
		user    string // "" = denied with 401
	}{
		{p, hdr("X-API-Key", "k-alice"), "alice"},
		{p, hdr("X-API-Key", "k-carol"), "carol"},
		{p, hdr("X-API-Key", "k-dave"), ""},
		{p, hdr("X-API-Key", ""), ""},
		{p, nil, ""},
		{p, hdr("X-API-Key", "k-upper"), ""}, // upper-case hex never matches
		{p, hdr("Authorization", "Bearer k-alice"), ""},
		{bearer, hdr("Authorization", "Bearer k-bob"), "bob"},
		{bearer, hdr("X-API-Key", "k-bob"), ""},
	} {
		d, err := tc.p.Authenticate(context.Background(), &req{headers: tc.headers})
		if err != nil || d.Allow != (tc.user != "") || d.Subject != tc.user || (tc.user == "" && d.Status != 401) {
			t.Errorf("%v: %+v, %v; want user %q", tc.headers, d, err, tc.user)
		}
	}
	bad := load(t, e, guest, hostabi.PluginOptions{Tenant: "t3",
		Config: []byte(`{"keys":["not","a","map"]}`), Caps: hostabi.Capabilities{Config: true, Crypto: true}})
	for range 2 { // the config is retried, and fails again
		if d, err := bad.Authenticate(context.Background(), &req{headers: hdr("Authorization", "Bearer k-alice")}); err != nil || d.Status != 503 {
			t.Errorf("bad config: %+v, %v; want 503", d, err)
		}
	}
}

func TestExamplePathRule(t *testing.T) {
	for _, g := range []string{"pathrule", "pathrule-as"} {
		t.Run(g, func(t *testing.T) { testExamplePathRule(t, g) })
	}
}

func testExamplePathRule(t *testing.T, guest string) {
	e := newEngine(t)
	p := load(t, e, guest, hostabi.PluginOptions{
		Config: []byte(`{"allow_cidrs":["10.0.0.0/8","2001:db8::/32"],"allow_paths":["/internal/","/health"]}`),
		Caps:   hostabi.Capabilities{Config: true},
	})
	for _, tc := range []struct {
		src, uri string
		user     string // "" = denied with 403
	}{
		{"10.1.2.3:999", "/internal/x?y=1", "net:10.1.2.3"},
		{"10.1.2.3:999", "/healthz", "net:10.1.2.3"}, // a prefix, not a segment
		{"10.1.2.3:999", "/public", ""},
		{"10.1.2.3:999", "/public?/internal/", ""},
		{"192.168.1.1:999", "/internal/x", ""},
		{"[::ffff:10.0.0.1]:80", "/internal/", "net:10.0.0.1"},
		{"[2001:db8:0:0:1:0:0:1]:443", "/health", "net:2001:db8::1:0:0:1"},
		{"[2001:DB8::a:0:0:0:1]:443", "/health", "net:2001:db8:0:a::1"},
		{"[2001:db9::1]:443", "/health", ""},
		{"[fe80::1%eth0]:80", "/health", ""},
		{"10.1.2.3", "/health", ""},       // no port
		{"010.1.2.3:1", "/health", ""},    // a leading zero
		{"10.1.2.3:65536", "/health", ""}, // port out of range
		{"[10.1.2.3]:1", "/health", ""},   // brackets around IPv4
		{"2001:db8::1:80", "/health", ""}, // IPv6 without brackets
	} {
		d, err := p.Authenticate(context.Background(), &req{source: tc.src, uri: tc.uri})
		if err != nil || d.Allow != (tc.user != "") || d.Subject != tc.user {
			t.Errorf("%s %s: %+v, %v; want user %q", tc.src, tc.uri, d, err, tc.user)
		}
		if tc.user == "" && d.Status != 403 {
			t.Errorf("%s %s: Status %d, want 403", tc.src, tc.uri, d.Status)
		}
	}
	for i, cfg := range []string{`{"allow_cidrs":["10.0.0.0/33"]}`, `{"allow_cidrs":["10.0.0.0/08"]}`, `{"allow_cidrs":"10.0.0.0/8"}`, `[1]`} {
		bad := load(t, e, guest, hostabi.PluginOptions{Tenant: fmt.Sprint("bad", i), Config: []byte(cfg), Caps: hostabi.Capabilities{Config: true}})
		for range 2 { // the config is retried, and fails again
			if d, err := bad.Authenticate(context.Background(), &req{source: "10.1.2.3:1", uri: "/health"}); err != nil || d.Status != 503 {
				t.Errorf("config %s: %+v, %v; want 503", cfg, d, err)
			}
		}
	}
}

func TestExampleWebhookFilter(t *testing.T) {
	for _, g := range []string{"webhookfilter", "webhookfilter-as"} {
		t.Run(g, func(t *testing.T) { testExampleWebhookFilter(t, g) })
	}
}

func testExampleWebhookFilter(t *testing.T, guest string) {
	e := newEngine(t)
	p := load(t, e, guest, hostabi.PluginOptions{
		Kind: hostabi.KindEvent, Caps: hostabi.Capabilities{Config: true},
		Config: []byte(`{"drop_codes":["SYNC_UPDATES_AVAILABLE"],"forward_to":"app"}`),
	})
	ev := hostabi.Event{Tenant: "t1", User: "alice", ItemID: "i", ItemState: "ok",
		Body: []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"i","n":[1,2.50,1e3]}`)}
	res, err := p.HandleEvent(context.Background(), ev)
	if err != nil || res.Action != hostabi.ActionForward || len(res.Forward) != 1 || res.Forward[0] != "app" {
		t.Fatalf("HandleEvent = %+v, %v", res, err)
	}
	// encoding/json's map[string]any, encoded again: keys sorted, numbers
	// as float64, the item context (never the access token) added.
	const want = `{"item_id":"i","n":[1,2.5,1000],"safeclose":{"item_state":"ok","tenant":"t1","user":"alice"},` +
		`"webhook_code":"PENDING_EXPIRATION","webhook_type":"ITEM"}`
	if string(res.Payload) != want {
		t.Errorf("payload = %s, want %s", res.Payload, want)
	}
	ev.Body = []byte(`{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE"}`)
	if res, err := p.HandleEvent(context.Background(), ev); err != nil || res.Action != hostabi.ActionDrop {
		t.Errorf("sync event: %+v, %v; want drop", res, err)
	}
	keep := load(t, e, guest, hostabi.PluginOptions{Tenant: "t2", Kind: hostabi.KindEvent, Caps: hostabi.Capabilities{Config: true}})
	ev.Body = []byte(`{"webhook_code":"SYNC_UPDATES_AVAILABLE","x":"<&>"}`)
	const wantKeep = `{"safeclose":{"item_state":"ok","tenant":"t1","user":"alice"},"webhook_code":"SYNC_UPDATES_AVAILABLE","x":"\u003c\u0026\u003e"}`
	if res, err := keep.HandleEvent(context.Background(), ev); err != nil || res.Action != hostabi.ActionKeep || string(res.Payload) != wantKeep {
		t.Errorf("no config: %+v (%s), %v; want keep with %s", res, res.Payload, err, wantKeep)
	}
	for _, body := range []string{`[1]`, `{"a":1e400}`, `{"a":01}`, ``} {
		ev.Body = []byte(body)
		if res, err := p.HandleEvent(context.Background(), ev); !errors.Is(err, hostabi.ErrBadResult) {
			t.Errorf("event %q: %+v, %v; want ErrBadResult", body, res, err)
		}
	}
}

// Issue 12: a bearer token costs the SDKs the same guest work whatever its
// length. Both read a one-value header whole (the host guarantees no NUL
// in a header value); a scan for the list separator, one byte at a time
// under fuel metering, cost jwtauth more than the rest of its call. Fuel
// counts the guest's loop iterations and calls, so the check holds on any
// machine.
func TestJWTAuthGuestWorkIndependentOfTokenLength(t *testing.T) {
	for _, g := range []string{"jwtauth", "jwtauth-as"} {
		t.Run(g, func(t *testing.T) {
			e := newEngine(t)
			key := []byte("tenant-jwt-secret-0123456789abcd")
			p := load(t, e, g, hostabi.PluginOptions{
				PoolSize: 1,
				Caps:     hostabi.Capabilities{Config: true, Crypto: true, Log: true},
				Secrets:  map[string][]byte{"main": key},
			})
			exp := time.Now().Add(time.Hour).Unix()
			fuel := func(pad int) int64 {
				t.Helper()
				tok := signHS256(key, map[string]any{"sub": "alice", "exp": exp, "pad": strings.Repeat("x", pad)})
				r := &req{headers: hdr("Authorization", "Bearer "+tok)}
				var used int64
				for range 2 { // the second call: the first may load the config
					d, err := p.Authenticate(context.Background(), r)
					if err != nil || !d.Allow {
						t.Fatalf("pad %d: %+v %v", pad, d, err)
					}
					var ok bool
					if used, ok = hostabi.LastCallFuel(p); !ok {
						t.Fatal("no fuel reading: not one instance under EnforceFuel")
					}
				}
				return used
			}
			short, long := fuel(0), fuel(4000) // under the host's 8 KiB JWT cap
			t.Logf("fuel: %d with a short token, %d with one 5.3 KB longer", short, long)
			if long > short+short/4 {
				t.Errorf("fuel grew from %d to %d with the token's length: the guest walks the token", short, long)
			}
		})
	}
}

// A __Host- cookie name (README: a sibling subdomain cannot set one) works
// as the session cookie of both jwtauth ports.
func TestExampleJWTAuthHostPrefixedCookie(t *testing.T) {
	for _, g := range []string{"jwtauth", "jwtauth-as"} {
		t.Run(g, func(t *testing.T) {
			e := newEngine(t)
			key := []byte("tenant-jwt-secret-0123456789abcd")
			p := load(t, e, g, hostabi.PluginOptions{
				Config:  []byte(`{"cookie":"__Host-session"}`),
				Caps:    hostabi.Capabilities{Config: true, Crypto: true, Log: true},
				Secrets: map[string][]byte{"main": key},
			})
			good := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
			for _, tc := range []struct {
				cookie string
				allow  bool
			}{
				{"__Host-session=" + good, true},
				{"session=" + good, false},
			} {
				d, err := p.Authenticate(context.Background(), &req{headers: hdr("Cookie", tc.cookie)})
				if err != nil || d.Allow != tc.allow || (tc.allow && d.Subject != "alice") {
					t.Errorf("Cookie %.24s…: %+v, %v; want allow %v", tc.cookie, d, err, tc.allow)
				}
			}
		})
	}
}
