package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// requestLog parses what reaches the upstream with net/http's own reader,
// request by request, so a second request smuggled inside the first shows
// up as one more request.
type requestLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func startRequestLog(t *testing.T) (*requestLog, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &requestLog{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for range 1000 {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					r.Body.Close()
					u.mu.Lock()
					u.reqs = append(u.reqs, r)
					u.mu.Unlock()
					if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
						return
					}
				}
			})
		}
	})
	return u, "http://" + ln.Addr().String()
}

func (u *requestLog) take() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.reqs
	u.reqs = nil
	return r
}

// A hostile auth plugin controls the identity it returns and its result.
// None of it reaches the upstream as anything but the documented headers:
// refused identities fail closed (503), a result outside allow/400..599 is
// 503, and the upstream gets exactly one request per client request.
func TestHostileGuestOutput(t *testing.T) {
	t.Parallel()
	up, upURL := startRequestLog(t)
	// The failures below would put the plugin in its penalty box (fail
	// fast, 503 for everything); each case is judged on its own.
	p, err := pluginEngine(t).Load(t.Context(), hostabi.PluginOptions{
		Tenant: "h", Name: "hostile", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "hostile"), PoolSize: 2,
		MemoryLimitPages: 256, PenaltyAfter: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	e := startEnv(t, envConfig{tenantsFn: func(_, plaidURL string) []Tenant {
		return []Tenant{pluginTenant("h", p, upURL, plaidURL)}
	}})
	tests := []struct {
		name, mode, status string
		want               int
	}{
		{"subject CRLF", "subject-crlf", "", 503},
		{"subject LF", "subject-lf", "", 503},
		{"subject obs-fold", "subject-obsfold", "", 503},
		{"subject NUL", "subject-nul", "", 503},
		{"subject DEL", "subject-del", "", 503},
		{"subject 1 MiB", "subject-huge", "", 503},
		{"subject 257 bytes", "subject-257", "", 503},
		{"subject with a trailing space", "subject-trailing-space", "", 503},
		{"subject with a leading tab", "subject-leading-tab", "", 503},
		{"claims", "claims", "", 200},
		{"status 101", "", "101", 503},
		{"status 100", "", "100", 503},
		{"status 999", "", "999", 503},
		{"status 0 without subject", "", "0", 503},
		{"status -1", "", "-1", 503},
		{"status 401 in the high word", "", "4294967697", 503},
		{"status 599", "", "599", 503},
		{"status 407", "", "407", 407},
		{"status 418", "", "418", 418},
	}
	for _, tt := range tests {
		r := e.do("GET", "h.test", "/x", "", nil, "X-Mode", tt.mode, "X-Status", tt.status)
		if r.status != tt.want {
			t.Errorf("%s: status = %d %s, want %d", tt.name, r.status, r.body, tt.want)
		}
		if len(r.body) > 200 {
			t.Errorf("%s: body is %d bytes, want a short fixed one", tt.name, len(r.body))
		}
		if got := r.hdr.Get("Connection"); r.status != 200 && got != "" && got != "close" {
			t.Errorf("%s: Connection = %q", tt.name, got)
		}
		reqs := up.take()
		if tt.want != 200 {
			if len(reqs) != 0 {
				t.Errorf("%s: upstream got %d requests, want none", tt.name, len(reqs))
			}
			continue
		}
		if len(reqs) != 1 {
			t.Fatalf("%s: upstream got %d requests, want 1", tt.name, len(reqs))
		}
		h := reqs[0].Header
		if got := h.Values("X-Safeclose-User"); len(got) != 1 || got[0] != "eve" {
			t.Errorf("%s: X-Safeclose-User = %q, want [eve]", tt.name, got)
		}
		if got := h.Values("X-Safeclose-Tenant"); len(got) != 1 || got[0] != "h" {
			t.Errorf("%s: X-Safeclose-Tenant = %q, want [h]", tt.name, got)
		}
		claims := 0
		for k := range h {
			if strings.HasPrefix(k, "X-Safeclose-Claim-") {
				claims++
			}
		}
		if claims != 16 || h.Get("X-Safeclose-Claim-C0") != strings.Repeat("v", 1024) {
			t.Errorf("%s: %d claims, want the first 16 of 1 KiB", tt.name, claims)
		}
		for _, k := range []string{"X-Safeclose-Claim-Connection", "X-Safeclose-Claim-V", "X-Safeclose-Claim-Big"} {
			if _, ok := h[k]; ok {
				t.Errorf("%s: refused claim %s reached the upstream", tt.name, k)
			}
		}
	}
}
