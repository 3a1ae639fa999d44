package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clientFrom is an HTTP client whose connections come from ip, another
// loopback address than the tests' 127.0.0.1: another sender.
func clientFrom(t *testing.T, ip net.IP) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// A forger sending a new made-up kid with every webhook took each
// unknown-kid fetch as the limiter freed it, so Plaid's genuine kid (a
// fresh process has none cached; a rotated key is new) was never fetched
// and every genuine webhook was answered 503 while the flood lasted. The
// limiter now tells senders apart (webhook.Verifier): the forger, here on
// 127.0.0.66, is blamed after its first unknown kid, and the genuine
// webhooks, from 127.0.0.1, get a fetch within a second or two.
func TestUnknownKidFloodSparesGenuineSender(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	cl := clientFrom(t, net.IPv4(127, 0, 0, 66))
	b64 := base64.RawURLEncoding.EncodeToString
	var sent, limited atomic.Int64
	forged := func(i int64) {
		jwt := b64([]byte(`{"alg":"ES256","kid":"forged-`+fmt.Sprint(i)+`","typ":"JWT"}`)) + "." + b64([]byte(`{"iat":1}`)) + ".AAAA"
		req, _ := http.NewRequest("POST", e.base+pathWebhook, bytes.NewReader([]byte(`{}`)))
		req.Host = "t1.test"
		req.Header.Set("Plaid-Verification", jwt)
		if res, err := cl.Do(req); err == nil {
			if res.StatusCode == 503 {
				limited.Add(1)
			}
			res.Body.Close()
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				forged(sent.Add(1))
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // the flood is on

	var answers []int
	accepted := 0
	for i := range 16 {
		r := e.postSigned("t1.test", fmt.Appendf(nil, `{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"x","n":%d}`, i))
		answers = append(answers, r.status)
		if r.status == 200 {
			accepted++
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("forged webhooks sent: %d (%d answered 503); genuine answers: %v", sent.Load(), limited.Load(), answers)
	if accepted == 0 {
		t.Errorf("no genuine Plaid webhook accepted during an unknown-kid flood from another address (answers %v)", answers)
	}
	if limited.Load() == 0 {
		t.Errorf("the flood was never throttled (%d sent)", sent.Load())
	}
}

// webhooks.source_ips: a genuine, Plaid-signed webhook from an address
// outside the list is refused 403 before verification (nothing stored, no
// key fetched); from inside it is taken.
func TestWebhookSourceIPs(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1,
		SourceIPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("2001:db8::/32")}}})
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"src"}`)
	jwt, err := e.sim.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", e.base+pathWebhook, bytes.NewReader(body))
	req.Host = "t1.test"
	req.Header.Set("Plaid-Verification", jwt)
	res, err := clientFrom(t, net.IPv4(127, 0, 0, 66)).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Error struct{ Code string } }
	_ = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if res.StatusCode != 403 || got.Error.Code != "webhook_source_refused" {
		t.Fatalf("webhook from 127.0.0.66 = %d %q, want 403 webhook_source_refused", res.StatusCode, got.Error.Code)
	}
	if n, _ := e.db.QueueLen(); n != 0 {
		t.Fatalf("a refused webhook was queued (%d)", n)
	}
	if r := e.postSigned("t1.test", body); r.status != 200 {
		t.Fatalf("the same webhook from 127.0.0.1 = %d %s, want 200", r.status, r.body)
	}
	if got := testutil.ToFloat64(e.srv.metrics.webhooksIn.WithLabelValues("t1", "source_refused")); got != 1 {
		t.Errorf("source_refused counter = %v, want 1", got)
	}
}
