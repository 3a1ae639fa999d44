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

// An independent verifier of Plaid webhooks, written from Plaid's documented
// algorithm with jwx (it shares no code with the emulator's signer), and the
// tests that emulator webhooks pass it, that each deliberate fault fails it
// at the right step, that key rotation works, and that bodies have Plaid's
// exact byte format.

// keySource fetches the JWK for kid; expiredAt is the key's expired_at.
type keySource func(ctx context.Context, kid string) (key jwxjwk.Key, expiredAt *int64, err error)

// emulatorKeys fetches keys through plaid-go's /webhook_verification_key/get.
func emulatorKeys(api *plaid.PlaidApiService) keySource {
	return func(ctx context.Context, kid string) (jwxjwk.Key, *int64, error) {
		res, _, err := api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
		if err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(res.Key)
		if err != nil {
			return nil, nil, err
		}
		k, err := jwxjwk.ParseKey(b)
		if err != nil {
			return nil, nil, fmt.Errorf("jwxjwk.ParseKey(%s): %w", b, err)
		}
		var exp *int64
		if v := res.Key.ExpiredAt.Get(); v != nil {
			e := int64(*v)
			exp = &e
		}
		return k, exp, nil
	}
}

// Verification steps, in order.
const (
	stepOK        = ""
	stepHeader    = "header"    // missing or unparsable Plaid-Verification
	stepAlg       = "alg"       // alg is not ES256
	stepKid       = "kid"       // no kid
	stepKey       = "key"       // the key could not be fetched
	stepRetired   = "retired"   // the key has expired_at set (Plaid's sample rejects these)
	stepSignature = "signature" // ES256 signature does not verify
	stepClaims    = "claims"    // payload is not {iat, request_body_sha256}
	stepIAT       = "iat"       // older than 5 minutes, or from the future
	stepBody      = "body"      // sha256(raw body) != request_body_sha256
)

// verifyWebhook follows https://plaid.com/docs/api/webhooks/webhook-verification/
// and returns the step that failed ("" when the webhook is authentic).
func verifyWebhook(ctx context.Context, keys keySource, header string, body []byte, now time.Time) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return stepHeader, errors.New("no Plaid-Verification header")
	}
	msg, err := jws.Parse([]byte(header))
	if err != nil {
		return stepHeader, err
	}
	if len(msg.Signatures()) != 1 {
		return stepHeader, fmt.Errorf("%d signatures", len(msg.Signatures()))
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Algorithm() != jwa.ES256 {
		return stepAlg, fmt.Errorf("alg %q", h.Algorithm())
	}
	kid := h.KeyID()
	if kid == "" {
		return stepKid, errors.New("no kid")
	}
	key, expiredAt, err := keys(ctx, kid)
	if err != nil {
		return stepKey, err
	}
	if expiredAt != nil {
		return stepRetired, fmt.Errorf("key %s expired at %d", kid, *expiredAt)
	}
	payload, err := jws.Verify([]byte(header), jws.WithKey(jwa.ES256, key))
	if err != nil {
		return stepSignature, err
	}
	var claims struct {
		IAT  *int64 `json:"iat"`
		Hash string `json:"request_body_sha256"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.IAT == nil || len(claims.Hash) != 64 {
		return stepClaims, fmt.Errorf("claims %s: %v", payload, err)
	}
	iat := time.Unix(*claims.IAT, 0)
	if now.Sub(iat) > 5*time.Minute {
		return stepIAT, fmt.Errorf("iat %v is more than 5 minutes before %v", iat, now)
	}
	if iat.After(now.Add(time.Minute)) {
		return stepIAT, fmt.Errorf("iat %v is in the future of %v", iat, now)
	}
	sum := sha256.Sum256(body)
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(claims.Hash)) != 1 {
		return stepBody, errors.New("request_body_sha256 does not match the body")
	}
	return stepOK, nil
}

// plaidVector is testdata/plaid-webhook-sandbox.json: a real signed Plaid
// sandbox webhook and the JWK that signed it.
type plaidVector struct {
	JWK     json.RawMessage `json:"sandbox_jwk"`
	Webhook struct {
		Verification string `json:"plaid_verification"`
		IAT          int64  `json:"iat"`
		Hash         string `json:"request_body_sha256"`
		Body         string `json:"body"`
	} `json:"webhook"`
}

func loadVector(t testing.TB) plaidVector {
	t.Helper()
	b, err := os.ReadFile("testdata/plaid-webhook-sandbox.json")
	if err != nil {
		t.Fatal(err)
	}
	var v plaidVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Webhook.Body == "" || v.Webhook.Verification == "" || len(v.JWK) == 0 {
		t.Fatal("vector file lacks body, header or key")
	}
	return v
}

// The verifier is right: it accepts Plaid's real webhook (with Plaid's real
// key, at a time within 5 minutes of its iat) and rejects it otherwise.
func TestVerifierOnRealPlaidWebhook(t *testing.T) {
	t.Parallel()
	v := loadVector(t)
	keys := func(_ context.Context, kid string) (jwxjwk.Key, *int64, error) {
		k, err := jwxjwk.ParseKey(v.JWK)
		if err != nil {
			return nil, nil, err
		}
		if k.KeyID() != kid {
			return nil, nil, fmt.Errorf("unknown kid %q", kid)
		}
		return k, nil, nil
	}
	if c := jwtPayload(t, v.Webhook.Verification); c.IAT != v.Webhook.IAT || c.Hash != v.Webhook.Hash {
		t.Fatalf("vector claims %+v disagree with the file", c)
	}
	body := []byte(v.Webhook.Body)
	iat := time.Unix(v.Webhook.IAT, 0)
	tests := []struct {
		name   string
		header string
		body   []byte
		now    time.Time
		want   string
	}{
		{"authentic", v.Webhook.Verification, body, iat.Add(time.Minute), stepOK},
		{"6 minutes later", v.Webhook.Verification, body, iat.Add(6 * time.Minute), stepIAT},
		{"body re-indented", v.Webhook.Verification, bytes.ReplaceAll(body, []byte("\n  "), []byte("\n    ")), iat, stepBody},
		{"trailing newline", v.Webhook.Verification, append(append([]byte(nil), body...), '\n'), iat, stepBody},
		{"signature flipped", flipSig(v.Webhook.Verification), body, iat, stepSignature},
		{"no header", "", body, iat, stepHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, err := verifyWebhook(context.Background(), keys, tt.header, tt.body, tt.now); got != tt.want {
				t.Errorf("step = %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

// flipSig changes one byte of a JWS signature (keeping it base64url).
func flipSig(j string) string {
	b := []byte(j)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// Emulator webhooks verify, carry Plaid's JWT header, and the 5-minute iat
// window is enforced in both directions.
func TestEmulatorWebhooksVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	at, _ := e.linkItem(t, rcv.url)
	if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "SYNC_UPDATES_AVAILABLE")).Execute(); err != nil {
		t.Fatal(err)
	}
	h := rcv.waitCode(t, "SYNC_UPDATES_AVAILABLE")
	jwt := h.Header.Get("Plaid-Verification")
	if hdr := jwtHeader(t, jwt); hdr.Alg != "ES256" || hdr.Typ != "JWT" || hdr.Kid != e.currentKid(t) {
		t.Errorf("JWT header = %+v", hdr)
	}
	if c := jwtPayload(t, jwt); c.IAT != e.clk.Now().Unix() {
		t.Errorf("iat = %d, want %d", c.IAT, e.clk.Now().Unix())
	}
	keys := emulatorKeys(e.api)
	now := e.clk.Now()
	for _, tt := range []struct {
		name string
		now  time.Time
		want string
	}{
		{"now", now, stepOK},
		{"4m59s later", now.Add(5*time.Minute - time.Second), stepOK},
		{"5m01s later", now.Add(5*time.Minute + time.Second), stepIAT},
		{"2 minutes before iat", now.Add(-2 * time.Minute), stepIAT},
	} {
		if got, err := verifyWebhook(ctx, keys, jwt, h.Body, tt.now); got != tt.want {
			t.Errorf("%s: step %q (%v), want %q", tt.name, got, err, tt.want)
		}
	}
}

// Each fault the emulator can inject fails the verifier at the right step,
// whether sent through SendWebhook or POST /__emu/webhook/send.
func TestWebhookFaultsFailVerifier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fault Fault
		name  string
		want  string
		check func(t *testing.T, e *env, jwt string, got, sent []byte)
	}{
		{FaultNone, "none", stepOK, nil},
		{FaultDuplicate, "duplicate", stepOK, nil},
		{FaultWrongKey, "wrong_key", stepSignature, func(t *testing.T, e *env, jwt string, _, _ []byte) {
			if k := jwtHeader(t, jwt).Kid; k != e.currentKid(t) {
				t.Errorf("wrong-key JWT names kid %q, want the current %q", k, e.currentKid(t))
			}
		}},
		{FaultWrongAlg, "wrong_alg", stepAlg, func(t *testing.T, _ *env, jwt string, _, _ []byte) {
			if a := jwtHeader(t, jwt).Alg; a != "HS256" {
				t.Errorf("alg = %q, want HS256", a)
			}
		}},
		{FaultStaleIAT, "stale_iat", stepIAT, func(t *testing.T, e *env, jwt string, _, _ []byte) {
			if c := jwtPayload(t, jwt); c.IAT != e.clk.Now().Unix()-600 {
				t.Errorf("iat = %d, want now-600", c.IAT)
			}
		}},
		{FaultTamperedBody, "tampered_body", stepBody, func(t *testing.T, _ *env, jwt string, got, sent []byte) {
			sum := sha256.Sum256(sent)
			if bytes.Equal(got, sent) || jwtPayload(t, jwt).Hash != hex.EncodeToString(sum[:]) || !json.Valid(got) {
				t.Errorf("tampered body should differ from the signed one and stay JSON:\n%s\n%s", got, sent)
			}
		}},
		{FaultUnknownKid, "unknown_kid", stepKey, func(t *testing.T, e *env, jwt string, _, _ []byte) {
			_, hr, err := e.api.WebhookVerificationKeyGet(context.Background()).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(jwtHeader(t, jwt).Kid)).Execute()
			wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID")
		}},
	}
	for _, tt := range tests {
		for _, via := range []string{"SendWebhook", "/__emu/webhook/send"} {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := newEnv(t, Options{})
				rcv := newReceiver(t, nil)
				_, itemID := e.linkItem(t, rcv.url)
				body := map[string]any{"webhook_type": "ITEM", "webhook_code": "PENDING_DISCONNECT", "item_id": itemID,
					"reason": "INSTITUTION_MIGRATION", "disconnect_time": "2026-12-02T12:00:00Z", "environment": "sandbox"}
				if via == "SendWebhook" {
					if err := e.sim.SendWebhook(ctx, itemID, body, tt.fault); err != nil {
						t.Fatalf("SendWebhook: %v", err)
					}
				} else {
					req, _ := json.Marshal(map[string]any{"item_id": itemID, "body": body, "fault": tt.name})
					st, _, b := rawPost(t, e.ts.URL+"/__emu/webhook/send", string(req), credNone)
					if st != 200 || jsonObj(t, b)["delivered"] != true {
						t.Fatalf("/__emu/webhook/send = %d %s", st, b)
					}
				}
				n := 1
				if tt.fault == FaultDuplicate {
					n = 2
				}
				hooks := rcv.waitN(t, n)
				if len(hooks) != n {
					t.Fatalf("%d deliveries, want %d", len(hooks), n)
				}
				sent, err := FormatBody(body)
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range hooks {
					jwt := h.Header.Get("Plaid-Verification")
					if got, err := verifyWebhook(ctx, emulatorKeys(e.api), jwt, h.Body, e.clk.Now()); got != tt.want {
						t.Errorf("verifier step %q (%v), want %q", got, err, tt.want)
					}
					if tt.want != stepBody && !bytes.Equal(h.Body, sent) {
						t.Errorf("body = %s, want %s", h.Body, sent)
					}
					if tt.check != nil {
						tt.check(t, e, jwt, h.Body, sent)
					}
				}
				if ds := e.sim.Deliveries(); len(ds) != n || ds[0].Fault != tt.fault && tt.fault != FaultDuplicate {
					t.Errorf("delivery log = %+v", ds)
				}
			})
		}
	}
}

// Rotation gives a new kid; the old key is still served, with expired_at;
// new webhooks are signed with the new key.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	rotations := map[string]func(t *testing.T, e *env) string{
		"Server.RotateKey": func(t *testing.T, e *env) string {
			kid, err := e.sim.RotateKey()
			if err != nil {
				t.Fatal(err)
			}
			return kid
		},
		"POST /__emu/keys/rotate": func(t *testing.T, e *env) string {
			st, _, b := rawPost(t, e.ts.URL+"/__emu/keys/rotate", `{}`, credNone)
			kid, _ := jsonObj(t, b)["kid"].(string)
			if st != 200 {
				t.Fatalf("rotate = %d %s", st, b)
			}
			return kid
		},
	}
	for name, rotate := range rotations {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, Options{})
			rcv := newReceiver(t, nil)
			at, _ := e.linkItem(t, rcv.url)
			fire := func(code string) hook {
				t.Helper()
				if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, code)).Execute(); err != nil {
					t.Fatal(err)
				}
				return rcv.waitCode(t, code)
			}
			getKey := func(kid string) plaid.JWKPublicKey {
				t.Helper()
				k, _, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
				if err != nil {
					t.Fatalf("key %s: %v", kid, err)
				}
				return k.Key
			}
			before := fire("DEFAULT_UPDATE")
			old := jwtHeader(t, before.Header.Get("Plaid-Verification")).Kid
			if step, err := verifyWebhook(ctx, emulatorKeys(e.api), before.Header.Get("Plaid-Verification"), before.Body, e.clk.Now()); step != stepOK {
				t.Fatalf("before rotation: %s %v", step, err)
			}

			e.clk.Add(time.Hour)
			rotatedAt := e.clk.Now().Unix()
			kid := rotate(t, e)
			if kid == old || !kidRE.MatchString(kid) {
				t.Fatalf("new kid %q (old %q)", kid, old)
			}
			ok, nk := getKey(old), getKey(kid)
			if ok.ExpiredAt.Get() == nil || int64(*ok.ExpiredAt.Get()) != rotatedAt || int64(ok.CreatedAt) != clockStart.Unix() {
				t.Errorf("old key created_at %d expired_at %v; want %d and %d", ok.CreatedAt, ok.ExpiredAt.Get(), clockStart.Unix(), rotatedAt)
			}
			if nk.ExpiredAt.Get() != nil || int64(nk.CreatedAt) != rotatedAt || nk.X == ok.X {
				t.Errorf("new key = %+v", nk)
			}

			after := fire("SYNC_UPDATES_AVAILABLE")
			if k := jwtHeader(t, after.Header.Get("Plaid-Verification")).Kid; k != kid {
				t.Errorf("webhook after rotation signed by %q, want %q", k, kid)
			}
			if step, err := verifyWebhook(ctx, emulatorKeys(e.api), after.Header.Get("Plaid-Verification"), after.Body, e.clk.Now()); step != stepOK {
				t.Errorf("after rotation: %s %v", step, err)
			}
			// A webhook signed by the retired key is refused (as Plaid's sample does).
			if step, _ := verifyWebhook(ctx, emulatorKeys(e.api), before.Header.Get("Plaid-Verification"), before.Body, e.clk.Now().Add(-time.Hour)); step != stepRetired {
				t.Errorf("old-key webhook: step %q, want %q", step, stepRetired)
			}
			// A second rotation keeps the first key's expired_at.
			e.clk.Add(time.Hour)
			third := rotate(t, e)
			if third == kid || third == old {
				t.Errorf("second rotation reused a kid")
			}
			if k := getKey(old); int64(*k.ExpiredAt.Get()) != rotatedAt {
				t.Errorf("first key's expired_at moved to %d", *k.ExpiredAt.Get())
			}
			if k := getKey(kid); k.ExpiredAt.Get() == nil || int64(*k.ExpiredAt.Get()) != e.clk.Now().Unix() {
				t.Errorf("second key's expired_at = %v", k.ExpiredAt.Get())
			}
		})
	}
}

// canonical renders JSON as Plaid formats webhook bodies: object keys sorted,
// two-space indent, ": " after keys, empty objects/arrays as {} and [],
// numbers exactly as written, no trailing newline.
func canonical(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	var out bytes.Buffer
	if err := render(&out, v, ""); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func render(w *bytes.Buffer, v any, indent string) error {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.WriteString("{}")
			return nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.WriteString("{\n")
		for i, k := range keys {
			w.WriteString(indent + "  ")
			if err := render(w, k, ""); err != nil {
				return err
			}
			w.WriteString(": ")
			if err := render(w, x[k], indent+"  "); err != nil {
				return err
			}
			if i < len(keys)-1 {
				w.WriteByte(',')
			}
			w.WriteByte('\n')
		}
		w.WriteString(indent + "}")
	case []any:
		if len(x) == 0 {
			w.WriteString("[]")
			return nil
		}
		w.WriteString("[\n")
		for i, e := range x {
			w.WriteString(indent + "  ")
			if err := render(w, e, indent+"  "); err != nil {
				return err
			}
			if i < len(x)-1 {
				w.WriteByte(',')
			}
			w.WriteByte('\n')
		}
		w.WriteString(indent + "]")
	case json.Number:
		w.WriteString(x.String())
	case string, bool, nil:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(x); err != nil {
			return err
		}
		w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	default:
		return fmt.Errorf("unexpected %T", v)
	}
	return nil
}

// Plaid's real webhook and every emulator webhook are byte-for-byte their
// canonical rendering: sorted keys, 2-space indent, no trailing newline.
func TestWebhookByteFormat(t *testing.T) {
	t.Parallel()
	v := loadVector(t)
	real := []byte(v.Webhook.Body)
	if c, err := canonical(real); err != nil || !bytes.Equal(c, real) {
		t.Fatalf("canonical form of Plaid's own webhook differs (%v):\n%s\nvs\n%s", err, c, real)
	}
	// The comparison has teeth: other renderings of the same JSON differ.
	var m map[string]any
	_ = json.Unmarshal(real, &m)
	compact, _ := json.Marshal(m)
	four, _ := json.MarshalIndent(m, "", "    ")
	unsorted := []byte("{\n  \"webhook_type\": \"TRANSACTIONS\",\n  \"error\": null\n}")
	for _, b := range [][]byte{compact, four, append(append([]byte(nil), real...), '\n'), unsorted} {
		if c, err := canonical(b); err != nil || bytes.Equal(c, b) {
			t.Errorf("canonical() accepted a non-Plaid rendering: %q", b)
		}
	}

	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	at, _ := e.linkItem(t, newReceiver(t, nil).url) // replaced below
	wu := plaid.NewItemWebhookUpdateRequest(at)
	wu.SetWebhook(rcv.url)
	if _, _, err := e.api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*wu).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatal(err)
	}
	codes := []string{"DEFAULT_UPDATE", "SYNC_UPDATES_AVAILABLE", "NEW_ACCOUNTS_AVAILABLE", "PENDING_EXPIRATION", "PENDING_DISCONNECT", "USER_PERMISSION_REVOKED", "LOGIN_REPAIRED"}
	for _, code := range codes {
		if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, code)).Execute(); err != nil {
			t.Fatal(err)
		}
	}
	hooks := rcv.waitN(t, len(codes)+2)
	for _, h := range hooks {
		if c, err := canonical(h.Body); err != nil || !bytes.Equal(c, h.Body) {
			t.Errorf("%s webhook is not in Plaid's byte format (%v):\n%q\nwant\n%q", h.Code, err, h.Body, c)
		}
		if !bytes.HasPrefix(h.Body, []byte("{\n  \"")) || bytes.HasSuffix(h.Body, []byte("\n")) {
			t.Errorf("%s webhook framing: %q", h.Code, h.Body)
		}
		if step, err := verifyWebhook(ctx, emulatorKeys(e.api), h.Header.Get("Plaid-Verification"), h.Body, e.clk.Now()); step != stepOK {
			t.Errorf("%s webhook does not verify: %s %v", h.Code, step, err)
		}
	}
	// FormatBody, used by tools that sign their own bodies, matches too.
	b, err := FormatBody(map[string]any{"b": []any{}, "a": map[string]any{"z": 1, "y": []any{true, nil, 2.5}}, "c": map[string]any{}})
	if c, cerr := canonical(b); err != nil || cerr != nil || !bytes.Equal(b, c) {
		t.Errorf("FormatBody = %q, canonical %q", b, c)
	}
}
