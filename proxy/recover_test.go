package proxy

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/store"
)

// panicAuth is an Authenticator that panics, the way a bug in a handler
// path would.
type panicAuth struct{ secret string }

func (a panicAuth) Authenticate(context.Context, *fasthttp.RequestCtx) (Identity, error) {
	var m map[string]int
	//lint:ignore SA5000 the panic is the point of this Authenticator
	m[a.secret]++ // assignment to a nil map: a runtime error
	return Identity{}, nil
}

// panicCount reads safeclose_panics_total{where}.
func panicCount(t *testing.T, reg *prometheus.Registry, where string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "safeclose_panics_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "where" && l.GetValue() == where {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("safeclose_panics_total{where=%q} not registered", where)
	return 0
}

// Issue 9.1 (second trust pass): a panic in the public handler answered
// nothing and ended the process. Now it is a 500 "internal", logged once
// with its stack (no secrets), counted, and the next request is served.
func TestPanicPublicHandlerRecovered(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs lockedBuf
	const secret = "sekrit-value-in-a-panicking-handler"
	e := startEnv(t, envConfig{
		logTo:   &logs,
		options: func(o *Options) { o.Registry = reg },
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
			ts[0].Auth = panicAuth{secret: secret}
			return ts
		},
	})
	for range 3 {
		r := e.do("GET", "t1.test", pathStatus, "alice-key", nil)
		if r.status != http.StatusInternalServerError || r.errCode(t) != "internal" {
			t.Fatalf("GET status via a panicking authenticator = %d %s, want 500 internal", r.status, r.body)
		}
	}
	if r := e.do("GET", "t2.test", pathStatus, "carol-key", nil); r.status != http.StatusOK {
		t.Fatalf("next request after the panics = %d %s, want 200", r.status, r.body)
	}
	if got := panicCount(t, reg, panicPublic); got != 3 {
		t.Errorf("safeclose_panics_total{where=public} = %v, want 3", got)
	}
	out := logs.String()
	if n := strings.Count(out, "recovered a panic"); n != 1 {
		t.Errorf("panic logged %d times, want 1 (throttled):\n%s", n, out)
	}
	if !strings.Contains(out, "panicAuth") {
		t.Errorf("panic log has no stack naming the panicking function:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "alice-key") {
		t.Errorf("panic log leaks request data:\n%s", out)
	}
}

// panicStore is the real store whose readiness probe panics while boom is set.
type panicStore struct {
	*store.DB
	boom *atomic.Bool
}

func (p panicStore) ProbeStore() error {
	if p.boom.Load() {
		panic("probe exploded")
	}
	return p.DB.ProbeStore()
}

// Issue 9.1 (second trust pass): the admin handler and the readiness probe
// goroutines recover too; a panicking probe answers 500 "internal" (or a
// failed check) and the admin listener keeps serving.
func TestPanicAdminRecovered(t *testing.T) {
	reg := prometheus.NewRegistry()
	var boom atomic.Bool
	boom.Store(true)
	e := startEnv(t, envConfig{
		options: func(o *Options) { o.Registry = reg },
		store: func(t testing.TB, kr *store.Keyring) Store {
			db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			return panicStore{DB: db, boom: &boom}
		},
	})
	// A tenant check that panics runs in a probe goroutine of its own.
	for _, tn := range e.srv.table.Load().tenants {
		tn.checks = append(tn.checks, readyCheck{"boom", func(context.Context) error { panic("check exploded") }})
	}
	admin := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(admin.Close)
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := get("/readyz"); st != http.StatusInternalServerError || errCodeOf(t, body) != "internal" {
		t.Fatalf("/readyz with a panicking store probe = %d %s, want 500 internal", st, body)
	}
	if st, body := get("/healthz"); st != http.StatusOK {
		t.Fatalf("/healthz after the panic = %d %s", st, body)
	}
	boom.Store(false)
	st, body := get("/readyz")
	if st != http.StatusOK || !strings.Contains(body, `"boom":"`) || strings.Contains(body, `"boom":"ok"`) {
		t.Fatalf("/readyz with a panicking tenant check = %d %s, want 200 with the check failed", st, body)
	}
	want := float64(1 + len(e.srv.table.Load().tenants))
	if got := panicCount(t, reg, panicAdmin); got != want {
		t.Errorf("safeclose_panics_total{where=admin} = %v, want %v", got, want)
	}
	if st, body := get("/metrics"); st != http.StatusOK || !strings.Contains(body, "safeclose_panics_total") {
		t.Fatalf("/metrics = %d, no safeclose_panics_total in:\n%s", st, body)
	}
}

// itemPanicStore is the real store whose item lookup panics: the webhook
// worker's path for every event.
type itemPanicStore struct{ *store.DB }

func (itemPanicStore) Item(string, string) (store.Item, error) { panic("item lookup exploded") }

// Issue 9.1 (second trust pass): a panic in a webhook worker ended the
// process. Now the attempt fails (retried, then dead-lettered with a fixed
// error) and the proxy keeps serving.
func TestPanicWebhookWorkerRecovered(t *testing.T) {
	reg := prometheus.NewRegistry()
	var db *store.DB
	e := startEnv(t, envConfig{
		options:    func(o *Options) { o.Registry = reg },
		webhookOpt: WebhookOptions{MaxAttempts: 2},
		store: func(t testing.TB, kr *store.Keyring) Store {
			var err error
			db, err = store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			return itemPanicStore{db}
		},
	})
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-1"}`)
	if _, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: "t1", Body: body, ReceivedAt: time.Now(), BodySHA256: sha256.Sum256(body)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the panicking entry dead-lettered", func() bool {
		dl, err := db.DeadLetters(10)
		return err == nil && len(dl) == 1
	})
	dl, _ := db.DeadLetters(10)
	if dl[0].LastError != errPanic.Error() {
		t.Errorf("dead letter error = %q, want %q", dl[0].LastError, errPanic.Error())
	}
	if got := panicCount(t, reg, panicWebhook); got != 2 {
		t.Errorf("safeclose_panics_total{where=webhook} = %v, want 2 (one per attempt)", got)
	}
	if r := e.do("GET", "t2.test", pathStatus, "carol-key", nil); r.status != http.StatusOK {
		t.Fatalf("request after the worker panics = %d %s", r.status, r.body)
	}
}
