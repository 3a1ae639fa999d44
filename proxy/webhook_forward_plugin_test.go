package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/store"
)

// An event plugin that names a destination its tenant does not have (a
// typo, one a reload removed, another tenant's name) used to have the
// event completed as done with nothing sent, logged or kept (a review of
// 2026-12-08). It is a dead letter now, whose reason names the
// destination, and another tenant's destination is never reached.
func TestPluginUnknownDestinationDeadLettered(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var t1Hits, t2Hits atomic.Int64
	t1app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t1Hits.Add(1) }))
	t.Cleanup(t1app.Close)
	t2app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t2Hits.Add(1) }))
	t.Cleanup(t2app.Close)

	eng := pluginEngine(t)
	// The shipped example plugin, configured to forward to t2's destination
	// name (or think of it as a typo of "app").
	ev, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "t1", Name: "webhookfilter", Kind: hostabi.KindEvent, Wasm: guestWasm(t, "webhookfilter"), PoolSize: 2,
		Timeout: 5 * time.Second, MemoryLimitPages: 256, Caps: hostabi.Capabilities{Config: true},
		Config: []byte(`{"forward_to":"app2"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close(context.Background()) })

	var logs lockedBuffer
	e := startEnv(t, envConfig{
		logTo:      &logs,
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
			ts[0].Forward = []Destination{{Name: "app", URL: t1app.URL, Secret: secret}}
			ts[0].EventPlugins = []*hostabi.Plugin{ev}
			ts[1].Forward = []Destination{{Name: "app2", URL: t2app.URL, Secret: secret}}
			return ts
		},
	})
	if r := e.postSigned("t1.test", event(0)); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	eventually(t, "queue drained", func() bool { n, _ := e.db.QueueLen(); return n == 0 })
	time.Sleep(100 * time.Millisecond) // let the outcome's write settle
	if n := t2Hits.Load(); n != 0 {
		t.Fatalf("t1's plugin reached t2's destination %d times", n)
	}
	dead, _ := e.db.DeadLetters(10)
	if len(dead) != 1 || !strings.Contains(dead[0].LastError, `"app2"`) || !strings.Contains(dead[0].LastError, "does not have") {
		t.Fatalf("dead letters = %+v; want the event, its reason naming the unknown destination", dead)
	}
	if done := testutil.ToFloat64(e.srv.metrics.webhooksDone.WithLabelValues("t1", "done")); done != 0 {
		t.Errorf("counted done %v times; want 0", done)
	}
	logs.mu.Lock()
	logged := logs.b.String()
	logs.mu.Unlock()
	if !strings.Contains(logged, "app2") {
		t.Errorf("the log does not name the unknown destination: %s", logged)
	}
}

// An event plugin that names destinations, has every name refused by
// add_forward, ignores that and answers Forward used to have the event
// sent to every destination: the ones it meant to keep the event from
// too. It is a dead letter now, and no destination gets it.
func TestPluginRefusedForwardNamesSendNothing(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var hits atomic.Int64
	dest := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(dest.Close)
	eng := pluginEngine(t)
	ev := loadPlugin(t, eng, "t1", "event", hostabi.KindEvent, time.Second)
	e := startEnv(t, envConfig{
		webhookOpt: WebhookOptions{Workers: 1, MaxAttempts: 3, Backoff: time.Millisecond, MaxBackoff: time.Millisecond},
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", []Destination{
				{Name: "app", URL: dest.URL, Secret: secret}, {Name: "other", URL: dest.URL, Secret: secret}})
			ts[0].EventPlugins = []*hostabi.Plugin{ev}
			return ts
		},
	})
	b, _ := json.Marshal(map[string]any{"webhook_type": "ITEM", "webhook_code": "TEST_BAD_FORWARD", "environment": "sandbox"})
	if r := e.postSigned("t1.test", b); r.status != 200 {
		t.Fatalf("webhook = %d %s", r.status, r.body)
	}
	var dead []store.Entry
	eventually(t, "dead-lettered", func() bool { dead, _ = e.db.DeadLetters(10); return len(dead) == 1 })
	if n := hits.Load(); n != 0 {
		t.Fatalf("destinations got the event %d times; want none", n)
	}
	if !strings.Contains(dead[0].LastError, "refused every name") {
		t.Errorf("dead letter reason = %q", dead[0].LastError)
	}
}
