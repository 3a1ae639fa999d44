package proxy

import (
	"bytes"
	"regexp"
	"sync"
	"testing"

	"github.com/safeclose/safeclose/internal/plaidsim"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

var accessTokenRE = regexp.MustCompile(`access-(sandbox|production|development)-[0-9a-f-]+`)

// An access token never reaches a log line, at debug level, across the
// whole flow: link, exchange, status, webhook processing, a failed save.
func TestAccessTokensNeverLogged(t *testing.T) {
	t.Parallel()
	var logs lockedBuf
	e := startEnv(t, envConfig{logTo: &logs})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	e.do("GET", "t1.test", pathStatus, "alice-key", nil)
	body := map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "item_id": itemID,
		"consent_expiration_time": "2026-12-25T00:00:00Z", "environment": "sandbox"}
	if err := e.sim.SendWebhook(t.Context(), itemID, body, plaidsim.FaultNone); err != nil {
		t.Fatal(err)
	}
	eventually(t, "processed", func() bool { return e.itemState("t1.test", "alice-key", itemID) == "pending_expiration" })

	var logs2 lockedBuf
	nk := startEnv(t, envConfig{noKey: true, logTo: &logs2})
	if r := nk.link("t1.test", "alice-key", "ins_109508"); r.json(t)["persisted"] != false {
		t.Fatalf("no-key exchange = %s", r.body)
	}
	for name, l := range map[string]string{"normal": logs.String(), "no key": logs2.String()} {
		if l == "" {
			t.Errorf("%s: nothing logged; the test would prove nothing", name)
		}
		if m := accessTokenRE.FindString(l); m != "" {
			t.Errorf("%s: an access token reached the log: %s", name, m)
		}
	}
}
