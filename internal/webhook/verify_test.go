package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

type vector struct {
	JWK     Key `json:"sandbox_jwk"`
	Webhook struct {
		Header string `json:"plaid_verification"`
		IAT    int64  `json:"iat"`
		Body   string `json:"body"`
	} `json:"webhook"`
}

func loadVector(t testing.TB) vector {
	t.Helper()
	b, err := os.ReadFile("testdata/plaid-webhook-sandbox.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRealPlaidWebhookVerifies(t *testing.T) {
	t.Parallel()
	v := loadVector(t)
	at := time.Unix(v.Webhook.IAT+60, 0)
	fetches := 0
	ver, err := NewVerifier(Options{
		Now:   func() time.Time { return at },
		Fetch: func(_ context.Context, kid string) (Key, error) { fetches++; return v.JWK, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ver.Verify(t.Context(), v.Webhook.Header, []byte(v.Webhook.Body))
	if err != nil {
		t.Fatalf("Verify(real Plaid webhook) = %v", err)
	}
	if c.Kid != v.JWK.Kid || c.IssuedAt.Unix() != v.Webhook.IAT {
		t.Errorf("claims = %+v", c)
	}
	if _, err := ver.Verify(t.Context(), v.Webhook.Header, []byte(v.Webhook.Body)); err != nil || fetches != 1 {
		t.Errorf("second verify: %v, fetches = %d, want 1 (cached)", err, fetches)
	}
	tampered := []byte(v.Webhook.Body)
	tampered[len(tampered)-3] = 'X'
	if _, err := VerifyOffline(v.Webhook.Header, tampered, v.JWK, at); stepOf(err) != StepBodyHash {
		t.Errorf("tampered body: %v", err)
	}
	if _, err := VerifyOffline(v.Webhook.Header, []byte(v.Webhook.Body), v.JWK, time.Unix(v.Webhook.IAT+6*60, 0)); stepOf(err) != StepIssuedAt {
		t.Errorf("6 minutes later: %v", err)
	}
}

func stepOf(err error) Step {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Step
	}
	return 0
}

// signer makes Plaid-style webhooks with a test key.
type signer struct {
	kid string
	key *ecdsa.PrivateKey
}

func newSigner(t testing.TB, kid string) *signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, key: k}
}

func (s *signer) jwk() Key {
	pub, err := s.key.PublicKey.Bytes() // 0x04 ‖ X ‖ Y; issue 10.6: no deprecated X/Y
	if err != nil {
		panic(err)
	}
	b, c := pub[1:33], pub[33:]
	return Key{Kid: s.kid, Alg: "ES256", Crv: "P-256", Kty: "EC", Use: "sig",
		X: base64.RawURLEncoding.EncodeToString(b), Y: base64.RawURLEncoding.EncodeToString(c), CreatedAt: 1}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (s *signer) sign(t testing.TB, hdr string, iat int64, body []byte) string {
	sum := sha256.Sum256(body)
	p := fmt.Sprintf(`{"iat":%d,"request_body_sha256":"%s"}`, iat, hex.EncodeToString(sum[:]))
	in := b64(hdr) + "." + b64(p)
	h := sha256.Sum256([]byte(in))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (s *signer) hdr() string { return `{"alg":"ES256","kid":"` + s.kid + `","typ":"JWT"}` }

func TestVerifyRejections(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	good := newSigner(t, "kid-good")
	other := newSigner(t, "kid-good") // same kid, different key
	expired := newSigner(t, "kid-expired")
	body := []byte("{\n  \"item_id\": \"abc\",\n  \"webhook_code\": \"ERROR\",\n  \"webhook_type\": \"ITEM\"\n}")
	keys := map[string]Key{"kid-good": good.jwk(), "kid-expired": expired.jwk()}
	ek := keys["kid-expired"]
	one := int64(5)
	ek.ExpiredAt = &one
	keys["kid-expired"] = ek
	ver, _ := NewVerifier(Options{Now: func() time.Time { return now }, MissInterval: time.Nanosecond,
		Fetch: func(_ context.Context, kid string) (Key, error) {
			k, ok := keys[kid]
			if !ok {
				return Key{}, ErrUnknownKey
			}
			return k, nil
		}})
	hs := func(secret string) string { // algorithm confusion: HS256 keyed with the public x
		in := b64(`{"alg":"HS256","kid":"kid-good","typ":"JWT"}`) + "." + b64(fmt.Sprintf(`{"iat":%d}`, now.Unix()))
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	goodTok := good.sign(t, good.hdr(), now.Unix(), body)
	tests := []struct {
		name string
		tok  string
		body []byte
		step Step
	}{
		{"ok", goodTok, body, 0},
		{"missing header", "", body, StepHeader},
		{"garbage", "abc", body, StepHeader},
		{"extra segment", goodTok + ".x", body, StepHeader},
		{"bad base64 header", "%%%." + b64("{}") + ".x", body, StepHeader},
		{"alg none", b64(`{"alg":"none","kid":"kid-good"}`) + "." + b64(`{"iat":1}`) + ".", body, StepAlg},
		{"alg HS256 confusion", hs(good.jwk().X), body, StepAlg},
		{"alg RS256", good.sign(t, `{"alg":"RS256","kid":"kid-good","typ":"JWT"}`, now.Unix(), body), body, StepAlg},
		{"no kid", good.sign(t, `{"alg":"ES256","typ":"JWT"}`, now.Unix(), body), body, StepHeader},
		{"unknown kid", good.sign(t, `{"alg":"ES256","kid":"nope","typ":"JWT"}`, now.Unix(), body), body, StepKey},
		{"expired key", expired.sign(t, expired.hdr(), now.Unix(), body), body, StepKey},
		{"wrong key", other.sign(t, other.hdr(), now.Unix(), body), body, StepSignature},
		{"bad signature bytes", goodTok[:len(goodTok)-4] + "AAAA", body, StepSignature},
		{"stale iat", good.sign(t, good.hdr(), now.Add(-301*time.Second).Unix(), body), body, StepIssuedAt},
		{"future iat", good.sign(t, good.hdr(), now.Add(10*time.Minute).Unix(), body), body, StepIssuedAt},
		{"tampered body", goodTok, append([]byte(" "), body...), StepBodyHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ver.Verify(t.Context(), tt.tok, tt.body)
			if got := stepOf(err); got != tt.step || (tt.step == 0 && err != nil) {
				t.Errorf("Verify = %v (step %v), want step %v", err, got, tt.step)
			}
			// Only a verified signature with an out-of-window iat is Stale:
			// the caller answers it so that Plaid retries.
			if _, stale := Stale(err); stale != (tt.step == StepIssuedAt) {
				t.Errorf("Stale(%v) = %v, want %v", err, stale, tt.step == StepIssuedAt)
			}
		})
	}
	stale := func(iat time.Time) error {
		_, err := ver.Verify(t.Context(), good.sign(t, good.hdr(), iat.Unix(), body), body)
		return err
	}
	if skew, ok := Stale(stale(now.Add(-10 * time.Minute))); !ok || skew != 10*time.Minute {
		t.Errorf("Stale(iat 10m ago) = %v, %v; want 10m0s, true", skew, ok)
	}
	if skew, ok := Stale(stale(now.Add(10 * time.Minute))); !ok || skew != -10*time.Minute {
		t.Errorf("Stale(iat 10m ahead) = %v, %v; want -10m0s, true", skew, ok)
	}
	// A forged signature with a stale iat is refused at the signature.
	forged := other.sign(t, good.hdr(), now.Add(-10*time.Minute).Unix(), body)
	if _, err := ver.Verify(t.Context(), forged, body); stepOf(err) != StepSignature {
		t.Errorf("forged token with a stale iat: Verify = %v, want step signature", err)
	} else if _, ok := Stale(err); ok {
		t.Errorf("Stale(forged) = true, want false")
	}
}

// ReportStale says to report at most once a minute, with the count since.
func TestReportStaleOncePerMinute(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier(Options{Fetch: func(context.Context, string) (Key, error) { return Key{}, ErrUnknownKey }})
	t0 := time.Unix(1_800_000_000, 0)
	steps := []struct {
		at     time.Duration
		since  int
		report bool
	}{{0, 1, true}, {time.Second, 0, false}, {59 * time.Second, 0, false}, {61 * time.Second, 3, true}, {62 * time.Second, 0, false}}
	for _, st := range steps {
		if since, report := v.ReportStale(t0.Add(st.at)); since != st.since || report != st.report {
			t.Errorf("ReportStale(+%v) = %d, %v; want %d, %v", st.at, since, report, st.since, st.report)
		}
	}
}

// Issue 10.5: the fetch is single-flight — checked while every caller is
// blocked (synctest.Wait), so a late caller cannot hit the cache and hide a
// second fetch — and uncached kids are limited to one fetch per
// MissInterval on a clock that moves.
func TestKeyFetchIsSingleFlightAndRateLimited(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSigner(t, "k-new")
		var fetches atomic.Int32
		gate := make(chan struct{})
		ver, _ := NewVerifier(Options{Now: time.Now, MissInterval: time.Second, // the bubble's fake clock
			Fetch: func(_ context.Context, kid string) (Key, error) {
				fetches.Add(1)
				<-gate
				if kid == "k-new" {
					return s.jwk(), nil
				}
				return Key{}, ErrUnknownKey
			}})
		body := []byte(`{}`)
		tok := s.sign(t, s.hdr(), time.Now().Unix(), body)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := ver.Verify(context.Background(), tok, body); err != nil {
					t.Errorf("Verify: %v", err)
				}
			})
		}
		synctest.Wait() // all 20 are blocked: in the fetch, or waiting for it
		if n := fetches.Load(); n != 1 {
			t.Errorf("20 concurrent webhooks with a new kid are in %d fetches, want 1", n)
		}
		close(gate)
		wg.Wait()
		if n := fetches.Load(); n != 1 {
			t.Errorf("20 concurrent webhooks with a new kid caused %d fetches, want 1", n)
		}
		forged := func(i int) error {
			tok := s.sign(t, fmt.Sprintf(`{"alg":"ES256","kid":"forged-%d","typ":"JWT"}`, i), time.Now().Unix(), body)
			_, err := ver.Verify(context.Background(), tok, body)
			return err
		}
		// Within the MissInterval of the first fetch, forged kids fetch nothing.
		for i := range 100 {
			if err := forged(i); stepOf(err) != StepKey {
				t.Fatalf("forged kid: %v", err)
			}
		}
		if n := fetches.Load(); n != 1 {
			t.Errorf("forged kids within one MissInterval caused %d more fetches, want 0", n-1)
		}
		// One interval later, exactly one more.
		time.Sleep(time.Second)
		for i := range 100 {
			if err := forged(100 + i); stepOf(err) != StepKey {
				t.Fatalf("forged kid: %v", err)
			}
		}
		if n := fetches.Load(); n != 2 {
			t.Errorf("forged kids one MissInterval later caused %d more fetches, want 1", n-1)
		}
	})
}

func TestKeyFetchTransportErrorIsErrKeyFetch(t *testing.T) {
	t.Parallel()
	s := newSigner(t, "k")
	ver, _ := NewVerifier(Options{Fetch: func(context.Context, string) (Key, error) { return Key{}, errors.New("dial tcp: refused") }})
	_, err := ver.Verify(t.Context(), s.sign(t, s.hdr(), time.Now().Unix(), nil), nil)
	if !errors.Is(err, ErrKeyFetch) {
		t.Errorf("Verify with Plaid down = %v, want ErrKeyFetch", err)
	}
}

func FuzzVerify(f *testing.F) {
	s := newSigner(f, "k")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	f.Add(s.sign(f, s.hdr(), now.Unix(), body), body)
	f.Add("a.b.c", []byte("x"))
	ver, _ := NewVerifier(Options{Now: func() time.Time { return now },
		Fetch: func(_ context.Context, kid string) (Key, error) {
			if kid == "k" {
				return s.jwk(), nil
			}
			return Key{}, ErrUnknownKey
		}})
	f.Fuzz(func(t *testing.T, tok string, b []byte) {
		c, err := ver.Verify(context.Background(), tok, b)
		if err != nil {
			return
		}
		// Accepted: the body must be exactly one we signed.
		if sha256.Sum256(b) != c.BodySHA256 || string(b) != string(body) {
			t.Fatalf("accepted a body we never signed: %q", b)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	s := newSigner(b, "k")
	body := make([]byte, 400)
	now := time.Now()
	tok := s.sign(b, s.hdr(), now.Unix(), body)
	ver, _ := NewVerifier(Options{Fetch: func(context.Context, string) (Key, error) { return s.jwk(), nil }})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ver.Verify(context.Background(), tok, body); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 10.6: publicKey (now internal/jwkp256.PublicKey) refuses a
// point that is not on P-256.
func TestPublicKeyRefusesOffCurvePoint(t *testing.T) {
	t.Parallel()
	k := newSigner(t, "k").jwk()
	if _, err := publicKey(k); err != nil {
		t.Fatalf("publicKey(good) = %v", err)
	}
	y, _ := base64.RawURLEncoding.DecodeString(k.Y)
	y[31] ^= 1
	k.Y = base64.RawURLEncoding.EncodeToString(y)
	if _, err := publicKey(k); err == nil || !strings.Contains(err.Error(), "not on P-256") {
		t.Errorf("publicKey(off-curve) = %v, want not on P-256", err)
	}
}

// Issue 10.9: FuzzVerify found that a signature longer than 86 base64url
// characters made check decode it into its 64-byte buffer, and
// encoding/base64 panics on a short destination: any sender who knows a
// current kid could crash the process with one POST. Every signature length
// other than 86 must be refused, not panic. (Corpus:
// testdata/fuzz/FuzzVerify/e16e81ecc197710e.)
func TestVerifyRefusesSignatureOfWrongLength(t *testing.T) {
	t.Parallel()
	s := newSigner(t, "k")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	good := s.sign(t, s.hdr(), now.Unix(), body)
	ver, err := NewVerifier(Options{Now: func() time.Time { return now },
		Fetch: func(context.Context, string) (Key, error) { return s.jwk(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ver.Verify(t.Context(), good, body); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	signing := good[:strings.LastIndexByte(good, '.')+1]
	sig := good[len(signing):]
	for _, bad := range []string{
		"", sig[:1], sig[:85], sig + "A", sig + "AA", sig + "AAAA", sig + strings.Repeat("A", 87), strings.Repeat("0", 87),
	} {
		var (
			verr error
			pan  any
		)
		func() {
			defer func() { pan = recover() }()
			_, verr = ver.Verify(t.Context(), signing+bad, body)
		}()
		if pan != nil {
			t.Errorf("Verify(signature of %d chars) panicked: %v", len(bad), pan)
			continue
		}
		if ve := (*VerifyError)(nil); !errors.As(verr, &ve) || ve.Step != StepSignature {
			t.Errorf("Verify(signature of %d chars) = %v, want a signature failure", len(bad), verr)
		}
	}
}

// Tenants that verify with the same Plaid key share one precomputed key
// (its 396 KiB table is built once), and a signature by another key is
// still refused with it.
func TestVerifiersSharePrecomputedKey(t *testing.T) {
	t.Parallel()
	s := newSigner(t, "shared")
	body := []byte(`{"webhook_type":"ITEM"}`)
	tok := s.sign(t, s.hdr(), time.Now().Unix(), body)
	var vs []*Verifier
	for range 2 {
		v, err := NewVerifier(Options{Fetch: func(context.Context, string) (Key, error) { return s.jwk(), nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), tok, body); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		vs = append(vs, v)
	}
	a, b := vs[0].keys["shared"], vs[1].keys["shared"]
	if a == nil || b == nil || a.pub != b.pub {
		t.Fatalf("two tenants' cached keys %p, %p: want one shared precomputed key", a, b)
	}
	other := newSigner(t, "shared") // same kid, another key
	forged := other.sign(t, other.hdr(), time.Now().Unix(), body)
	var ve *VerifyError
	if _, err := vs[0].Verify(context.Background(), forged, body); !errors.As(err, &ve) || ve.Step != StepSignature {
		t.Fatalf("a signature by another key: %v; want a signature failure", err)
	}
}

// A source whose fetched kid Plaid did not know may start a fetch only
// when none started in the last BlamedInterval, for NegativeTTL: a flood of
// made-up kids from one address (or one IPv6 /64) leaves other senders'
// kids a fetch within MissInterval, and the blame lapses.
func TestUnknownKidBlamesItsSource(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSigner(t, "k-genuine")
		var fetches atomic.Int32
		ver, _ := NewVerifier(Options{Now: time.Now, MissInterval: time.Second, NegativeTTL: time.Minute, // the bubble's clock
			Fetch: func(_ context.Context, kid string) (Key, error) {
				fetches.Add(1)
				if kid == "k-genuine" {
					return s.jwk(), nil
				}
				return Key{}, ErrUnknownKey
			}})
		body := []byte(`{}`)
		n := 0
		forge := func(src netip.Addr) error {
			n++
			tok := s.sign(t, fmt.Sprintf(`{"alg":"ES256","kid":"forged-%d","typ":"JWT"}`, n), time.Now().Unix(), body)
			_, err := ver.VerifyFrom(context.Background(), src, tok, body)
			return err
		}
		forger := netip.MustParseAddr("2001:db8:1:2::1")
		// Its first made-up kid is fetched and found unknown: it is blamed.
		if err := forge(forger); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("first forged kid: %v, want ErrUnknownKey", err)
		}
		// For the next 9 s its kids, from any address of its /64, fetch nothing.
		for range 90 {
			time.Sleep(100 * time.Millisecond)
			if err := forge(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", n))); !errors.Is(err, ErrKeyRateLimited) {
				t.Fatalf("forged kid %d from the blamed /64: %v, want ErrKeyRateLimited", n, err)
			}
		}
		if got := fetches.Load(); got != 1 {
			t.Fatalf("a flood from one blamed /64 caused %d fetches in 9 s, want 1", got)
		}
		// Another sender's kid is fetched at once (MissInterval has passed).
		tok := s.sign(t, s.hdr(), time.Now().Unix(), body)
		if _, err := ver.VerifyFrom(context.Background(), netip.MustParseAddr("52.21.26.131"), tok, body); err != nil {
			t.Fatalf("genuine webhook from another source during the flood: %v", err)
		}
		// An address outside the /64 is not blamed.
		time.Sleep(time.Second)
		if err := forge(netip.MustParseAddr("2001:db8:1:3::1")); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("made-up kid from another /64 a second later: %v, want a fetch (ErrUnknownKey)", err)
		}
		// The blame lapses after NegativeTTL.
		time.Sleep(time.Minute)
		if err := forge(forger); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("made-up kid once the blame lapsed: %v, want a fetch (ErrUnknownKey)", err)
		}
	})
}

// bound (the negative cache's and the blamed sources'): lapsed entries go
// first, and the map never stays above its limit.
func TestBoundDropsLapsedFirst(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	m := map[int]time.Time{}
	for i := range 6 {
		m[i] = now.Add(time.Duration(i-2) * time.Second) // 0, 1 lapsed; 2 lapses now
	}
	bound(m, 6, now)
	if len(m) != 6 {
		t.Fatalf("at its limit: %d entries, want 6 untouched", len(m))
	}
	m[6] = now.Add(time.Minute)
	bound(m, 6, now)
	if len(m) != 4 {
		t.Fatalf("over its limit with 3 lapsed: %d entries, want 4 (the live ones)", len(m))
	}
	for k := range m {
		if k < 3 {
			t.Errorf("lapsed entry %d kept", k)
		}
	}
	for i := range 10 {
		m[100+i] = now.Add(time.Minute)
	}
	bound(m, 5, now)
	if len(m) != 5 {
		t.Errorf("over its limit with none lapsed: %d entries, want 5", len(m))
	}
}
