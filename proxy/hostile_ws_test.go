package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const wsUpgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// Issue 9.2 (second trust pass): WebSocket upgrades from a hostile client.
// Without credentials nothing reaches the upstream; a forged identity
// header is replaced; an upstream that does not switch to websocket gets no
// tunnel, so bytes the client sends after the upgrade request are never
// passed to it as a raw stream (a smuggled request).
func TestHostileWebSocketUpgrade(t *testing.T) {
	var mu sync.Mutex
	var seen []string // "METHOD URI user=X-Safeclose-User"
	answer, upgradeTo := http.StatusOK, ""
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI+" user="+r.Header.Get(HeaderUser))
		st, to := answer, upgradeTo
		mu.Unlock()
		if st == http.StatusSwitchingProtocols { // switches, but not as a WebSocket server would
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", to)
			if to == "websocket" {
				w.Header().Set("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=") // not the key's (RFC 6455 §4.2.2)
			}
		}
		w.WriteHeader(st)
		_, _ = w.Write([]byte("plain answer"))
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	const authz = "Authorization: Bearer alice-key\r\n"
	tests := []struct {
		name    string
		answer  int
		upgrade string // the upstream's Upgrade with a 101
		req     string
		status  int // what the client must get first
	}{
		{"no credentials", 200, "", "GET /socket HTTP/1.1\r\nHost: t1.test\r\n" + wsUpgrade + "\r\n", 401},
		{"forged identity without credentials", 200, "", "GET /socket HTTP/1.1\r\nHost: t1.test\r\nX-Safeclose-User: admin\r\n" + wsUpgrade + "\r\n", 401},
		{"forged identity", 200, "", "GET /socket HTTP/1.1\r\nHost: t1.test\r\n" + authz + "X-Safeclose-User: admin\r\nX-Safeclose-Tenant: t2\r\n" + wsUpgrade + "\r\n", 200},
		{"upstream says 200, client keeps talking", 200, "", "GET /socket HTTP/1.1\r\nHost: t1.test\r\n" + authz + wsUpgrade + "\r\n" + smuggled, 200},
		{"upstream switches to another protocol", 101, "h2c", "GET /socket HTTP/1.1\r\nHost: t1.test\r\n" + authz + wsUpgrade + "\r\n" + smuggled, 502},
		// A 101 to websocket whose Sec-WebSocket-Accept is not the one for
		// the client's key: not a WebSocket server agreeing (an upstream
		// answering 101 by mistake), so no tunnel.
		{"upstream's 101 with a wrong Sec-WebSocket-Accept", 101, "websocket", "GET /socket HTTP/1.1\r\nHost: t1.test\r\n" + authz + wsUpgrade + "\r\n" + smuggled, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen, answer, upgradeTo = nil, tt.answer, tt.upgrade
			mu.Unlock()
			res := rawExchange(t, e.addr, tt.req)
			if len(res) == 0 || res[0].StatusCode != tt.status {
				t.Fatalf("answer %v (first %d), want %d first", res, res[0].StatusCode, tt.status)
			}
			for _, r := range res {
				if r.StatusCode == http.StatusSwitchingProtocols {
					t.Fatalf("the client got a 101: a tunnel to an upstream that did not switch")
				}
			}
			mu.Lock()
			got := append([]string(nil), seen...)
			mu.Unlock()
			if tt.status == 401 && len(got) != 0 {
				t.Fatalf("an unauthenticated upgrade reached the upstream: %q", got)
			}
			for _, g := range got {
				if strings.Contains(g, "/smuggled") || strings.Contains(g, "admin") || !strings.HasSuffix(g, "user=alice") {
					t.Fatalf("the upstream saw %q", got)
				}
			}
			if len(got) > 1 {
				t.Fatalf("the upstream saw %d requests for one upgrade: %q", len(got), got)
			}
		})
	}
}
