package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/hostabi"
)

// Tenant isolation pass: a hostile client of one tenant, and a hostile
// tenant, against a real proxy with two tenants on loopback.

// hostSeen is one request as the tenant's authenticator or upstream saw it.
type hostSeen struct {
	who, host, tenant, fwdHost string
}

// hostLog records what each tenant's authenticator and upstream saw.
type hostLog struct {
	mu   sync.Mutex
	seen []hostSeen
}

func (l *hostLog) add(s hostSeen) {
	l.mu.Lock()
	l.seen = append(l.seen, s)
	l.mu.Unlock()
}

func (l *hostLog) take() []hostSeen {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen
	l.seen = nil
	return s
}

// hostAuth is a tenant's authenticator that notes the Host header it was
// shown (what a plugin reads through get_header) before asking next.
type hostAuth struct {
	tenant string
	log    *hostLog
	next   Authenticator
}

func (a hostAuth) Authenticate(base context.Context, ctx *fasthttp.RequestCtx) (Identity, error) {
	a.log.add(hostSeen{who: "auth " + a.tenant, host: string(ctx.Request.Header.Host())})
	return a.next.Authenticate(base, ctx)
}

// Tenant isolation: the tenant whose authenticator runs is the tenant whose
// upstream gets the request, and that upstream's Host, X-Forwarded-Host and
// X-Safeclose-Tenant all name it, whatever the request target and Host
// header say. fasthttp reads an authority out of an origin-form target that
// starts with "//" and holds "://" anywhere ("//t1.test/x?u=http://z"),
// while the path normalisation reads the same target as the path
// "/t1.test/x": routing picked t1 from the target, t1's key was accepted,
// and t1's upstream got the request with "Host: t2.test", the Host header
// (another tenant's host, which a multi-tenant app behind both routes by).
func TestHostileTargetCannotCrossTenants(t *testing.T) {
	log := &hostLog{}
	upstream := func(name string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.add(hostSeen{who: "upstream " + name, host: r.Host, tenant: r.Header.Get(HeaderTenant), fwdHost: r.Header.Get("X-Forwarded-Host")})
			_, _ = io.WriteString(w, r.RequestURI)
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	up1, up2 := upstream("t1"), upstream("t2")
	e := startEnv(t, envConfig{tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
		ts[0].Upstream, ts[1].Upstream = up1, up2
		for i := range ts {
			ts[i].Auth = hostAuth{tenant: ts[i].Name, log: log, next: ts[i].Auth}
		}
		return ts
	}})
	const alice, carol = "Authorization: Bearer alice-key\r\n", "Authorization: Bearer carol-key\r\n" // t1's, t2's
	tests := []struct {
		name, target, host, auth string
		status                   int
		tenant, seenHost, uri    string // when 200: who served it, the Host everyone saw, the upstream's target
	}{
		{"authority in an origin-form target, the other tenant's key", "//t1.test/x?u=http://z", "t2.test", alice, 401, "", "", ""},
		{"authority in an origin-form target, no path", "//t1.test?u=://z", "t2.test", alice, 401, "", "", ""},
		{"authority in an origin-form target, the Host's key", "//t1.test/x?u=http://z", "t2.test", carol, 200, "t2", "t2.test", "/t1.test/x?u=http://z"},
		{"authority in an origin-form target, reversed", "//t2.test/x?u=://z", "t1.test", carol, 401, "", "", ""},
		{"absolute form names another tenant than Host", "http://t1.test/x", "t2.test", alice, 200, "t1", "t1.test", "/x"},
		{"absolute form, Host's key", "http://t1.test/x", "t2.test", carol, 401, "", "", ""},
		{"absolute form with userinfo", "http://t1.test@t2.test/x", "t1.test", carol, 200, "t2", "t2.test", "/x"},
		{"absolute form, upper case and port", "HTTP://T1.TEST:80/x", "t2.test", alice, 200, "t1", "t1.test:80", "/x"},
		{"Host with userinfo", "/x", "t1.test@t2.test", carol, 200, "t2", "t2.test", "/x"},
		{"Host with userinfo, the userinfo's key", "/x", "t1.test@t2.test", alice, 401, "", "", ""},
		{"Host upper case with port", "/x", "T1.TEST:99", alice, 200, "t1", "t1.test:99", "/x"},
		{"Host with a trailing dot", "/x", "t1.test.", alice, 404, "", "", ""},
		{"Host percent-encoded", "/x", "t%31.test", alice, 400, "", "", ""},
		{"two Host headers", "/x", "t2.test\r\nHost: t1.test", alice, 400, "", "", ""},
		{"Host list", "/x", "t1.test, t2.test", alice, 400, "", "", ""},
		{"authority form", "t1.test:80", "t2.test", alice, 400, "", "", ""},
	}
	for _, tt := range tests {
		req := "GET " + tt.target + " HTTP/1.1\r\nHost: " + tt.host + "\r\n" + tt.auth + "Connection: close\r\n\r\n"
		res, body := rawDo(t, e.addr, req)
		seen := log.take()
		if res.StatusCode != tt.status {
			t.Errorf("%s: GET %s Host %q = %d %s, want %d (seen %+v)", tt.name, tt.target, tt.host, res.StatusCode, body, tt.status, seen)
			continue
		}
		var authed, served []hostSeen
		for _, s := range seen {
			if strings.HasPrefix(s.who, "auth ") {
				authed = append(authed, s)
			} else {
				served = append(served, s)
			}
		}
		if tt.status != 200 {
			if len(served) != 0 {
				t.Errorf("%s: refused with %d, yet reached %+v", tt.name, tt.status, served)
			}
			continue
		}
		want := []hostSeen{{who: "upstream " + tt.tenant, host: tt.seenHost, tenant: tt.tenant, fwdHost: tt.seenHost}}
		if len(served) != 1 || served[0] != want[0] || body != tt.uri {
			t.Errorf("%s: upstream saw %+v %q, want %+v %q", tt.name, served, body, want, tt.uri)
		}
		if len(authed) != 1 || authed[0] != (hostSeen{who: "auth " + tt.tenant, host: tt.seenHost}) {
			t.Errorf("%s: authenticators saw %+v, want only %s's with Host %q", tt.name, authed, tt.tenant, tt.seenHost)
		}
	}
}

// Tenant isolation: a genuine Plaid webhook for an item of t1 delivered to
// t2's host (Plaid signs with keys shared by every client, so t2's check
// accepts it: an operator who gave both tenants one webhook_url, or a copy
// of t1's event sent there) must not reach t2's app, nor t2's plugins, nor
// be reported as an orphan of t2; t1's item is not touched either.
func TestWebhookForAnotherTenantsItemIsNotForwarded(t *testing.T) {
	rv1, rv2 := &receiver{}, &receiver{}
	ts1, ts2 := newReceiver(t, rv1), newReceiver(t, rv2)
	secret := []byte("0123456789abcdef0123456789abcdef")
	e := startEnv(t, envConfig{tenantsFn: func(base, plaidURL string) []Tenant {
		ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
		ts[0].Forward = []Destination{{Name: "app1", URL: ts1.URL, Secret: secret}}
		ts[1].Forward = []Destination{{Name: "app2", URL: ts2.URL, Secret: secret}}
		return ts
	}})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	if r.status != 200 || itemID == "" {
		t.Fatalf("link = %d %s", r.status, r.body)
	}
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"` + itemID +
		`","consent_expiration_time":"2030-01-15T13:25:17Z","environment":"sandbox"}`)
	if r := e.postSigned("t2.test", body); r.status != 200 {
		t.Fatalf("webhook at t2 = %d %s", r.status, r.body)
	}
	eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	if _, done, _ := rv2.counts(); done != 0 {
		t.Errorf("t2's app got %d forwards of t1's event", done)
	}
	if _, done, _ := rv1.counts(); done != 0 {
		t.Errorf("t1's app got %d forwards of an event delivered to t2", done)
	}
	os, err := e.db.Orphans()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range os {
		t.Errorf("orphan recorded: %+v (t1 holds the item)", o)
	}
	if s := e.itemState("t1.test", "alice-key", itemID); s != "ok" {
		t.Errorf("t1's item state = %q after an event delivered to t2, want ok", s)
	}
}

// User isolation: a subject is the user's key in the store and their
// X-Safeclose-User upstream, so two subjects must never reach the upstream
// as one user. HTTP strips a header value's leading and trailing spaces and
// tabs, so a token whose sub is "alice " (a second account at the
// tenant's identity provider) reached the upstream as "alice", while the
// store kept it apart (its own Plaid items). Such a subject is refused.
func TestSubjectsStayDistinctUpstream(t *testing.T) {
	eng := pluginEngine(t)
	secret := []byte("tenant-jwt-secret-0123456789abcd")
	p, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "jwt", Name: "jwtauth", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "jwtauth"),
		PoolSize: 1, Timeout: 5 * time.Second, MemoryLimitPages: 256,
		Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true}, Secrets: map[string][]byte{"main": secret},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	up := echoUpstream(t)
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("jwt", p, up.URL, plaidURL)}
	}})
	for _, s := range []string{"alice", "alice ", " alice", "alice\t"} {
		tok := mintHS256(secret, s, time.Now().Add(time.Hour))
		r := e.do("GET", "jwt.test", "/app", "", nil, "Authorization", "Bearer "+tok)
		if s == "alice" {
			if r.status != 200 || !strings.Contains(string(r.body), `"user":["alice"]`) {
				t.Fatalf("sub %q = %d %s, want 200 as alice", s, r.status, r.body)
			}
			continue
		}
		if r.status == 200 {
			t.Errorf("sub %q = 200 %s: another subject reached the upstream (want refused)", s, r.body)
		}
	}
}
