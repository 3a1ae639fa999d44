package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/store"
)

// A destination's answer matters by its status alone: its headers are
// bounded (64 KiB, like an upstream's) where net/http's default let a
// tenant's app make each forward parse and hold 10 MiB (a review of
// 2026-12-08). Here an 8 MiB header block fails the forward.
func TestForwardAnswerHeadersBounded(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat("a", 4096)
	const lines = 2048 // 8 MiB of header lines
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for i := range lines {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), pad)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(app.Close)
	e := startEnv(t, envConfig{
		forward:    []Destination{{Name: "app", URL: app.URL, Secret: []byte("0123456789abcdef0123456789abcdef")}},
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	time.Sleep(50 * time.Millisecond)
	if ok := testutil.ToFloat64(e.srv.metrics.forwards.WithLabelValues("t1", "app", "ok")); ok != 0 {
		t.Errorf("a destination answer with %d MiB of headers was read whole and counted as a delivery; "+
			"want the header block bounded (like upstream answers, 64 KiB)", lines*4096>>20)
	}
}

// A forward's errors name its destination by scheme and host only: a
// webhook receiver often carries its credential in the path
// (https://host/hooks/<id>/<token>) or as a bare userinfo token
// (https://<token>@host/), and the error reaches the log, the entry's last
// error and `safeclose webhooks list`. Only the query was hidden before.
func TestForwardErrorsRedactTheURL(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused
	for _, tc := range []struct{ name, url, secret string }{
		{"path", "http://" + addr + "/hooks/T000/path-secret-42", "path-secret-42"},
		{"userinfo", "http://user-secret-42@" + addr + "/hook", "user-secret-42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			e := startEnv(t, envConfig{
				logTo:      &logs,
				forward:    []Destination{{Name: "app", URL: tc.url, Secret: []byte("0123456789abcdef0123456789abcdef")}},
				webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
			})
			if r := e.postSigned("t1.test", event(0)); r.status != 200 {
				t.Fatalf("webhook = %d %s", r.status, r.body)
			}
			var dl []store.Entry
			eventually(t, "event dead-lettered", func() bool {
				dl, _ = e.db.DeadLetters(10)
				return len(dl) == 1
			})
			logs.mu.Lock()
			logged := logs.b.String()
			logs.mu.Unlock()
			if strings.Contains(dl[0].LastError, tc.secret) || strings.Contains(logged, tc.secret) {
				t.Errorf("the destination URL's credential reached last_error (%q) and/or the log (%v)",
					dl[0].LastError, strings.Contains(logged, tc.secret))
			}
		})
	}
}
