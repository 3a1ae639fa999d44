package plaidsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	jwxjwk "github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/plaid/plaid-go/v29/plaid"
)

// verifyPlaid is an independent verifier following Plaid's published
// algorithm, with jwx: it returns the step that failed.
func verifyPlaid(api *plaid.PlaidApiService, header string, body []byte, now time.Time) (string, error) {
	msg, err := jws.Parse([]byte(header))
	if err != nil || len(msg.Signatures()) != 1 {
		return "parse", fmt.Errorf("parse: %v", err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Algorithm() != jwa.ES256 {
		return "alg", fmt.Errorf("alg %s", h.Algorithm())
	}
	kr, _, err := api.WebhookVerificationKeyGet(context.Background()).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(h.KeyID())).Execute()
	if err != nil {
		return "key", err
	}
	if kr.Key.ExpiredAt.Get() != nil {
		return "key", errors.New("key expired")
	}
	kb, _ := json.Marshal(map[string]any{"kty": kr.Key.Kty, "crv": kr.Key.Crv, "x": kr.Key.X, "y": kr.Key.Y, "kid": kr.Key.Kid, "alg": kr.Key.Alg, "use": kr.Key.Use})
	key, err := jwxjwk.ParseKey(kb)
	if err != nil {
		return "key", err
	}
	payload, err := jws.Verify([]byte(header), jws.WithKey(jwa.ES256, key))
	if err != nil {
		return "signature", err
	}
	var claims struct {
		IAT  int64  `json:"iat"`
		Hash string `json:"request_body_sha256"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "claims", err
	}
	if now.Sub(time.Unix(claims.IAT, 0)) > 5*time.Minute {
		return "iat", errors.New("stale")
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(claims.Hash)) != 1 {
		return "body", errors.New("body hash mismatch")
	}
	return "", nil
}

func TestWebhooksVerifyWithJWXAndFaultsFailTheRightStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	hooks := newHookSink(t)
	at, itemID := e.linkItem(t, hooks.url)
	_ = at
	body := map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "item_id": itemID,
		"consent_expiration_time": "2026-12-01T00:00:00Z", "environment": "sandbox"}
	tests := []struct {
		fault Fault
		step  string
	}{
		{FaultNone, ""}, {FaultWrongKey, "signature"}, {FaultWrongAlg, "alg"}, {FaultStaleIAT, "iat"},
		{FaultTamperedBody, "body"}, {FaultUnknownKid, "key"},
	}
	var signedBeforeRotation Delivery
	for _, tt := range tests {
		before := len(e.sim.Deliveries())
		_ = e.sim.SendWebhook(context.Background(), itemID, body, tt.fault)
		ds := e.sim.Deliveries()
		if len(ds) <= before {
			t.Fatalf("fault %d: no delivery recorded", tt.fault)
		}
		d := ds[len(ds)-1]
		if tt.fault == FaultNone {
			signedBeforeRotation = d
		}
		step, err := verifyPlaid(e.api, d.Verification, []byte(d.Body), e.clk.Now())
		if step != tt.step {
			t.Errorf("fault %d: verifier failed at %q (%v), want %q", tt.fault, step, err, tt.step)
		}
	}
	// After rotation, new deliveries are signed by the new key and verify.
	if _, err := e.sim.RotateKey(); err != nil {
		t.Fatal(err)
	}
	_ = e.sim.SendWebhook(context.Background(), itemID, body, FaultNone)
	ds := e.sim.Deliveries()
	if step, err := verifyPlaid(e.api, ds[len(ds)-1].Verification, []byte(ds[len(ds)-1].Body), e.clk.Now()); step != "" {
		t.Errorf("after rotation: %s %v", step, err)
	}
	// A delivery signed with the old (now expired) key is refused at "key".
	if step, _ := verifyPlaid(e.api, signedBeforeRotation.Verification, []byte(signedBeforeRotation.Body), e.clk.Now()); step != "key" {
		t.Errorf("old key after rotation: step %q, want key", step)
	}
}

// canonical renders JSON as Plaid formats webhook bodies: keys sorted,
// 2-space indent, no trailing newline (and no HTML escaping).
func canonical(t testing.TB, b []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	render(&out, v, "")
	return out.Bytes()
}

func render(w *bytes.Buffer, v any, ind string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.WriteString("{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.WriteString("{\n")
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			w.WriteString(ind + "  " + string(kb) + ": ")
			render(w, x[k], ind+"  ")
			if i < len(keys)-1 {
				w.WriteString(",")
			}
			w.WriteString("\n")
		}
		w.WriteString(ind + "}")
	case []any:
		if len(x) == 0 {
			w.WriteString("[]")
			return
		}
		w.WriteString("[\n")
		for i, e := range x {
			w.WriteString(ind + "  ")
			render(w, e, ind+"  ")
			if i < len(x)-1 {
				w.WriteString(",")
			}
			w.WriteString("\n")
		}
		w.WriteString(ind + "]")
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(x)
		w.WriteString(strings.TrimSuffix(buf.String(), "\n"))
	}
}

// The real Plaid webhook and an emulator webhook have the same byte format.
func TestWebhookByteFormatMatchesRealPlaid(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/plaid-webhook-sandbox.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Webhook struct {
			Body string `json:"body"`
		} `json:"webhook"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	real := []byte(v.Webhook.Body)
	if got := canonical(t, real); !bytes.Equal(got, real) {
		t.Fatalf("the canonical renderer does not reproduce Plaid's own bytes:\n%s\nvs\n%s", got, real)
	}
	e := newEnv(t, Options{})
	hooks := newHookSink(t)
	at, _ := e.linkItem(t, hooks.url)
	if _, _, err := e.api.SandboxItemFireWebhook(context.Background()).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "DEFAULT_UPDATE")).Execute(); err != nil {
		t.Fatal(err)
	}
	got := hooks.waitFor(t, 1)["DEFAULT_UPDATE"]
	if got == nil {
		t.Fatal("no webhook delivered")
	}
	if c := canonical(t, got); !bytes.Equal(c, got) {
		t.Errorf("emulator webhook is not in Plaid's format:\n%s\nwant\n%s", got, c)
	}
	if bytes.HasSuffix(got, []byte("\n")) || !bytes.HasPrefix(got, []byte("{\n  \"")) {
		t.Errorf("emulator webhook framing differs from Plaid's: %q", got)
	}
}

// Retries follow Plaid's schedule (time-scaled) and each attempt is re-signed.
func TestWebhookRetriesResigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{TimeScale: 0.00001, Now: time.Now})
	var attempts []string
	sink := newFlakySink(t, 2, &attempts)
	_, itemID := e.linkItem(t, sink.url)
	body := map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_PERMISSION_REVOKED", "item_id": itemID, "environment": "sandbox"}
	if err := e.sim.SendWebhook(context.Background(), itemID, body, FaultNone); err == nil {
		t.Fatal("first attempt answered 500 but SendWebhook reported success")
	}
	for range 500 {
		if sink.count() >= 3 {
			break
		}
		sleepShort()
	}
	got := sink.snapshot()
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3 (500, 500, 200)", len(got))
	}
	if got[0] == got[1] || got[1] == got[2] {
		t.Errorf("attempts were not re-signed: %v", got)
	}
	for i, j := range got {
		if step, err := verifyPlaid(e.api, j, sink.body, time.Now()); step != "" {
			t.Errorf("attempt %d does not verify: %s %v", i, step, err)
		}
	}
}
