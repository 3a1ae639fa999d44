package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Issue 9.7 and 12: webhooks for an item nobody holds are completed with
// their orphan written in the same transaction (Badger). The orphan is
// recorded once and logged once as an error; a repeat is logged at info
// and changes nothing; an item id the store refuses as an orphan (a NUL)
// still completes its entry, logged, instead of keeping it queued.
func TestUnknownItemWebhooksCompleteWithTheirOrphan(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	e := startEnv(t, envConfig{logTo: logs})
	for _, body := range []string{
		`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"nobodys-item","error":{"error_code":"ITEM_LOGIN_REQUIRED"},"environment":"sandbox"}`,
		`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"nobodys-item","environment":"sandbox"}`,
		`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"nul\u0000item","environment":"sandbox"}`,
	} {
		if r := e.postSigned("t1.test", []byte(body)); r.status != 200 {
			t.Fatalf("webhook %s = %d %s", body, r.status, r.body)
		}
	}
	done := e.srv.metrics.webhooksDone.WithLabelValues("t1", "done")
	eventually(t, "3 webhooks completed", func() bool { return testutil.ToFloat64(done) == 3 })
	if n, err := e.db.QueueLen(); err != nil || n != 0 {
		t.Errorf("QueueLen = %d, %v; want 0", n, err)
	}
	os, err := e.db.Orphans()
	if err != nil || len(os) != 1 || os[0].ItemID != "nobodys-item" || os[0].Tenant != "t1" || os[0].Detail != "webhook ITEM/ERROR" {
		t.Fatalf("Orphans = %+v, %v; want nobodys-item once, as first seen", os, err)
	}
	if g := testutil.ToFloat64(e.srv.metrics.orphans); g != 1 {
		t.Errorf("orphan gauge = %v, want 1", g)
	}
	count := map[string]int{}
	for _, l := range logs.lines(t) {
		if l["item_id"] != nil {
			count[l["level"].(string)+" "+l["msg"].(string)+" "+l["item_id"].(string)]++
		}
	}
	for line, want := range map[string]int{
		"ERROR orphan item: a webhook names an item no user holds; see `safeclose items orphans` nobodys-item": 1,
		"INFO webhook for an item we do not hold nobodys-item":                                                 1,
		"ERROR orphan item not recorded nul\x00item":                                                           1,
	} {
		if count[line] != want {
			t.Errorf("log %q × %d, want %d (all: %v)", line, count[line], want, count)
		}
	}
}
