package proxy

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

// Issue 12: the 200 of a stored webhook is written without json.Marshal and
// counted through pre-resolved counters; the answer's bytes, its headers and
// every counter are what they were.
func TestWebhookAnswerAndCounters(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"answer"}`)
	first := e.postSigned("t1.test", body)
	second := e.postSigned("t1.test", body)
	other := e.postSigned("t1.test", []byte(`{"webhook_type":"ITEM","item_id":"other"}`))
	for i, tt := range []struct {
		r      resp
		status string
	}{{first, "accepted"}, {second, "duplicate"}, {other, "accepted"}} {
		id, _ := tt.r.json(t)["id"].(string)
		want, _ := json.Marshal(struct {
			Status string `json:"status"`
			ID     string `json:"id,omitempty"`
		}{tt.status, id})
		if tt.r.status != 200 || id == "" || string(tt.r.body) != string(want) {
			t.Errorf("webhook %d = %d %s, want 200 %s", i, tt.r.status, tt.r.body, want)
		}
		if ct, cc := tt.r.hdr.Get("Content-Type"), tt.r.hdr.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
			t.Errorf("webhook %d headers: Content-Type %q, Cache-Control %q; want application/json, no-store", i, ct, cc)
		}
	}
	m := e.srv.metrics
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"accepted", testutil.ToFloat64(m.webhooksIn.WithLabelValues("t1", "accepted")), 2},
		{"duplicate", testutil.ToFloat64(m.webhooksIn.WithLabelValues("t1", "duplicate")), 1},
		{"webhook route 2xx", testutil.ToFloat64(m.requests.WithLabelValues("t1", pathWebhook, "2xx")), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s counter = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// writeIntakeAnswer falls back to json.Marshal for an id it cannot copy as is.
func TestWriteIntakeAnswerEscapes(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "0000018c1a2b3c4d00000001", `a"b<c>&\d`, "é\u2028"} {
		var ctx fasthttp.RequestCtx
		writeIntakeAnswer(&ctx, id == "", id)
		status := "accepted"
		if id == "" {
			status = "duplicate"
		}
		want, _ := json.Marshal(struct {
			Status string `json:"status"`
			ID     string `json:"id,omitempty"`
		}{status, id})
		if got := ctx.Response.Body(); string(got) != string(want) {
			t.Errorf("writeIntakeAnswer(%q) = %s, want %s", id, got, want)
		}
	}
}

// intakeContext: webhooks of one slot share a context whose deadline is at
// most intakeTimeout and at least intakeTimeout-intakeSlot after each of
// them; it ends with the server's base context.
func TestIntakeContextShared(t *testing.T) {
	t.Parallel()
	base, cancel := context.WithCancel(context.Background())
	s := &Server{base: base}
	t0 := time.Now()
	check := func(now time.Time) context.Context {
		t.Helper()
		c := s.intakeContext(now)
		d, ok := c.Deadline()
		if !ok || d.After(now.Add(intakeTimeout)) || d.Before(now.Add(intakeTimeout-intakeSlot)) {
			t.Fatalf("intakeContext(t0+%v) deadline = %v, %v; want within [now+%v, now+%v]", now.Sub(t0), d.Sub(now), ok, intakeTimeout-intakeSlot, intakeTimeout)
		}
		return c
	}
	a := check(t0)
	if b := check(t0.Add(intakeSlot - 1)); b != a {
		t.Error("a webhook in the same slot got a new context")
	}
	c := check(t0.Add(intakeSlot))
	if c == a {
		t.Error("a webhook a slot later shared the old context")
	}
	if d := check(t0.Add(-time.Second)); d == c { // the clock stepped back
		t.Error("a webhook before the slot began shared its context")
	}
	cancel()
	if a.Err() == nil || c.Err() == nil {
		t.Errorf("after the base ends: %v, %v; want both cancelled", a.Err(), c.Err())
	}
}
