package proxy

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The host clock is off by more than Plaid's 5 minutes (NTP broken): every
// genuine webhook fails the iat check. The signature verified, so the
// webhook is Plaid's: it is answered 503 (Plaid retries, re-signed, and the
// first retry after the clock is fixed is stored), never 401 (Plaid gives up
// on an endpoint that rejects most of its webhooks). The operator sees
// webhooks_received{result="clock_skew"} and one warning a minute per
// tenant that names the skew.
func TestWebhookClockSkewAnswers503AndSaysSo(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		off  time.Duration
		want string
	}{
		{"ahead", 10 * time.Minute, `"skew":"(9m59s|10m0s|10m1s)"`},
		{"behind", -10 * time.Minute, `"skew":"-(9m59s|10m0s|10m1s)"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var off atomic.Int64
			off.Store(int64(tt.off))
			var logs lockedBuf
			e := startEnv(t, envConfig{logTo: &logs, webhookOpt: WebhookOptions{Workers: -1}, optsFn: func(o *Options) {
				o.Now = func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
			}})
			for i := range 3 {
				r := e.postSigned("t1.test", event(i))
				if r.status != 503 {
					t.Fatalf("genuine webhook %d with the host clock %s off = %d %s, want 503", i, tt.off, r.status, r.body)
				}
			}
			if n, _ := e.db.QueueLen(); n != 0 {
				t.Errorf("queue holds %d entries after refused webhooks, want 0", n)
			}
			if got := testutil.ToFloat64(e.srv.metrics.webhooksIn.WithLabelValues("t1", "clock_skew")); got != 3 {
				t.Errorf("webhooks_received{result=clock_skew} = %v, want 3", got)
			}
			out := logs.String()
			if n := strings.Count(out, "host clock"); n != 1 {
				t.Errorf("clock warnings = %d, want 1 (rate-limited); logs:\n%s", n, out)
			}
			if n := strings.Count(out, `"request failed"`); n != 0 {
				t.Errorf("%d unthrottled request-failed lines for the refused webhooks, want 0 (the clock warning is the rate-limited one); logs:\n%s", n, out)
			}
			if !regexp.MustCompile(tt.want).MatchString(out) {
				t.Errorf("logs do not name the skew %q:\n%s", tt.want, out)
			}
			// The clock is fixed; Plaid's next (re-signed) attempt is stored.
			off.Store(0)
			if r := e.postSigned("t1.test", event(0)); r.status != 200 {
				t.Fatalf("webhook after the clock is fixed = %d %s, want 200", r.status, r.body)
			}
		})
	}
}
