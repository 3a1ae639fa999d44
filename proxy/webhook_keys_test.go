package proxy

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// postSigned posts body to host's webhook route with a JWT the emulator signs
// with its current key, as Plaid would.
func (e *testEnv) postSigned(host string, body []byte) resp {
	e.t.Helper()
	jwt, err := e.sim.Sign(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do("POST", host, pathWebhook, "", body, "Plaid-Verification", jwt)
}

// postForgedKid posts a webhook whose JWT names a made-up kid.
func (e *testEnv) postForgedKid(host, kid string) resp {
	e.t.Helper()
	b := base64.RawURLEncoding.EncodeToString
	jwt := b([]byte(`{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`)) + "." + b([]byte(`{"iat":1}`)) + ".AAAA"
	return e.do("POST", host, pathWebhook, "", []byte(`{}`), "Plaid-Verification", jwt)
}

// Issue 9.8: a flood of made-up kids never turns a genuine webhook into a
// 4xx: a genuine new kid that meets the spent fetch limit gets 503
// key_unavailable (Plaid retries); another tenant's flood does not touch it.
func TestWebhookKeyThrottleAnswers503PerTenant(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	// t2 is flooded; t1's first genuine webhook still verifies.
	for i := range 30 {
		if r := e.postForgedKid("t2.test", fmt.Sprintf("flood-%d", i)); r.status != 401 && r.status != 503 {
			t.Fatalf("forged kid answered %d %s", r.status, r.body)
		}
	}
	if r := e.postSigned("t1.test", []byte(`{"n":0}`)); r.status != 200 {
		t.Fatalf("t1 genuine webhook during t2's flood = %d %s, want 200", r.status, r.body)
	}
	// t1 itself: a forged kid spends the miss limiter just before Plaid
	// rotates and sends with the new kid. Bounded tries: a slow machine may
	// let the limiter refill in between (then the answer is 200).
	saw503 := false
	for i := range 5 {
		if _, err := e.sim.RotateKey(); err != nil {
			t.Fatal(err)
		}
		e.postForgedKid("t1.test", fmt.Sprintf("race-%d", i))
		r := e.postSigned("t1.test", fmt.Appendf(nil, `{"n":%d}`, i+1))
		switch {
		case r.status == 503 && r.errCode(t) == "key_unavailable":
			saw503 = true
		case r.status == 200:
		default:
			t.Fatalf("genuine webhook with a new kid after a forged one = %d %s, want 503 key_unavailable (or 200)", r.status, r.body)
		}
		if saw503 {
			break
		}
	}
	if !saw503 {
		t.Errorf("never saw the throttled lookup answered 503")
	}
}

// Issue 9.8: a duplicate carries the id of the event first stored.
func TestWebhookDuplicateAnswersID(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1}})
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"x"}`)
	first := e.postSigned("t1.test", body).json(t)
	second := e.postSigned("t1.test", body).json(t)
	if first["status"] != "accepted" || second["status"] != "duplicate" {
		t.Fatalf("statuses = %v, %v; want accepted, duplicate", first, second)
	}
	if id, _ := first["id"].(string); id == "" || second["id"] != id {
		t.Errorf("duplicate id = %v, want the first copy's id %v", second["id"], first["id"])
	}
}

// Issue 9.8: wrong Plaid credentials make a genuine webhook 503 (not 401) and
// the tenant not ready in /readyz.
func TestWebhookWrongCredentials503AndNotReady(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{webhookOpt: WebhookOptions{Workers: -1},
		tenantsFn: func(base, plaidURL string) []Tenant {
			ts := defaultTenants(t, strings.TrimPrefix(base, "http://"), plaidURL, "", nil)
			ts[0].Plaid.Secret = "wrong-secret"
			return ts
		}})
	r := e.postSigned("t1.test", []byte(`{"webhook_type":"ITEM"}`))
	if r.status != 503 || r.errCode(t) != "key_unavailable" {
		t.Fatalf("genuine webhook with wrong credentials = %d %s, want 503 key_unavailable", r.status, r.body)
	}
	admin := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(admin.Close)
	res, err := http.Get(admin.URL + "/readyz?tenant=t1") // per-tenant readiness (Issue 9.16)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || !strings.Contains(string(b), `"webhook_keys":"credentials_refused"`) {
		t.Errorf("/readyz?tenant=t1 = %d %s, want 503 with webhook_keys credentials_refused", res.StatusCode, b)
	}
}

// A key endpoint that answers something that is not Plaid (a wrong base
// URL, an egress proxy's 404 or 407 page) says nothing about the kid: a
// genuine webhook gets 503 key_unavailable, so Plaid retries, not 401, and
// the kid is not remembered as unknown. Before, any 4xx counted as "no such
// key": the webhook was refused for good.
func TestWebhookKeyEndpointNotPlaid503(t *testing.T) {
	t.Parallel()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/webhook_verification_key/get" {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "<html><body>404 Not Found</body></html>")
			return
		}
		http.Error(w, "front: only the key route is tested", http.StatusBadGateway)
	}))
	t.Cleanup(front.Close)
	e := startEnv(t, envConfig{plaidURL: front.URL, webhookOpt: WebhookOptions{Workers: -1}})
	r := e.postSigned("t1.test", []byte(`{"webhook_type":"ITEM"}`))
	if r.status != 503 || r.errCode(t) != "key_unavailable" {
		t.Fatalf("genuine webhook, key endpoint answering 404 HTML = %d %s, want 503 key_unavailable", r.status, r.body)
	}
}
