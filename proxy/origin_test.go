package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// Safeclose's own state-changing routes refuse what a browser sends on
// another site's behalf: a cross-site form or text/plain fetch needs no
// preflight, and carries the session cookie whenever the tenant's cookie
// allows it (SameSite=None, or a sibling subdomain under SameSite=Lax).
// Clients that are not browsers send neither header and are unaffected.
func TestOwnRoutesRefuseCrossOrigin(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	tests := []struct {
		name, path string
		hdr        []string
		status     int
	}{
		{"link-token cross-site fetch", pathLinkToken, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.test"}, 403},
		{"link-token same-site sibling", pathLinkToken, []string{"Sec-Fetch-Site", "same-site", "Origin", "https://evil.t1.test"}, 403},
		{"link-token foreign origin, no fetch metadata", pathLinkToken, []string{"Origin", "https://evil.test"}, 403},
		{"link-token null origin", pathLinkToken, []string{"Origin", "null"}, 403},
		{"exchange cross-site form", pathExchange, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.test", "Content-Type", "text/plain"}, 403},
		{"link-token same-origin", pathLinkToken, []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://t1.test"}, 200},
		{"link-token same origin, no fetch metadata", pathLinkToken, []string{"Origin", "http://t1.test"}, 200},
		{"link-token user-initiated", pathLinkToken, []string{"Sec-Fetch-Site", "none"}, 200},
		{"link-token not a browser", pathLinkToken, nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(`{}`)
			if tt.path == pathExchange {
				body = []byte(`{"public_token":"public-sandbox-x"}`)
			}
			r := e.do("POST", "t1.test", tt.path, "alice-key", body, tt.hdr...)
			if r.status != tt.status {
				t.Fatalf("POST %s %v = %d %s, want %d", tt.path, tt.hdr, r.status, r.body, tt.status)
			}
			if tt.status == 403 && r.errCode(t) != "cross_origin" {
				t.Errorf("POST %s %v = %s, want code cross_origin", tt.path, tt.hdr, r.body)
			}
		})
	}
	if n, _ := e.db.Items("t1", "alice"); len(n) != 0 {
		t.Errorf("cross-origin requests stored items: %v", n)
	}
}

// The check itself, over plain HTTP and over TLS: over TLS an Origin must
// be https too (a page injected over plain HTTP under the same host is
// another origin), for browsers that send no Sec-Fetch-Site.
func TestCrossOriginScheme(t *testing.T) {
	for _, tc := range []struct {
		origin, fetchSite string
		tls, cross        bool
	}{
		{"http://t1.test", "", false, false},
		{"https://t1.test", "", false, false}, // TLS ended by a balancer in front
		{"https://t1.test", "", true, false},
		{"HTTPS://t1.test", "", true, false},
		{"http://t1.test", "", true, true},
		{"http://t1.test", "same-origin", true, false}, // the browser's own verdict stands
		{"https://evil.test", "", true, true},
		{"", "", true, false}, // not a browser
	} {
		var h fasthttp.RequestHeader
		h.SetHost("t1.test")
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			h.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		if got := crossOrigin(&h, tc.tls); got != tc.cross {
			t.Errorf("Origin %q, Sec-Fetch-Site %q, TLS %v: crossOrigin = %v, want %v", tc.origin, tc.fetchSite, tc.tls, got, tc.cross)
		}
	}
}
