package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// signPayload signs an arbitrary payload JSON (for malformed claims).
func (s *signer) signPayload(t testing.TB, p string) string {
	in := b64(s.hdr()) + "." + b64(p)
	h := sha256.Sum256([]byte(in))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// forgedKid is a token whose header names kid; it never verifies.
func forgedKid(kid string) string {
	return b64(`{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`) + "." + b64(`{"iat":1}`) + ".AAAA"
}

// Issue 9.8: a flood of made-up kids throttles only unknown-kid fetches: the
// genuine new kid that loses the race is "unavailable" (503, Plaid retries),
// never a rejection; known keys keep verifying; the negative cache is bounded.
func TestUnknownKidFloodIsRetryableAndSparesKnownKeys(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	known := newSigner(t, "k-known")
	fresh := newSigner(t, "k-fresh")
	var fetches atomic.Int32
	ver, _ := NewVerifier(Options{Now: func() time.Time { return now }, CacheSize: 4,
		Fetch: func(_ context.Context, kid string) (Key, error) {
			fetches.Add(1)
			switch kid {
			case "k-known":
				return known.jwk(), nil
			case "k-fresh":
				return fresh.jwk(), nil
			}
			return Key{}, ErrUnknownKey
		}})
	body := []byte(`{"a":1}`)
	if _, err := ver.Verify(t.Context(), known.sign(t, known.hdr(), now.Unix(), body), body); err != nil {
		t.Fatalf("known key: %v", err)
	}
	for i := range 1000 {
		if i%100 == 0 {
			now = now.Add(1100 * time.Millisecond) // let some forged fetches through
		}
		_, err := ver.Verify(t.Context(), forgedKid(fmt.Sprintf("forged-%d", i)), body)
		if !errors.Is(err, ErrUnknownKey) && !Unavailable(err) {
			t.Fatalf("forged kid %d: %v, want unknown key or unavailable", i, err)
		}
		if i%50 == 0 {
			if _, err := ver.Verify(t.Context(), known.sign(t, known.hdr(), now.Unix(), body), body); err != nil {
				t.Fatalf("known key during flood: %v", err)
			}
		}
	}
	// The genuine new kid arrives while the miss limiter is spent.
	_, err := ver.Verify(t.Context(), fresh.sign(t, fresh.hdr(), now.Unix(), body), body)
	if !Unavailable(err) {
		t.Errorf("new genuine kid while throttled = %v, want Unavailable (503, Plaid retries)", err)
	}
	now = now.Add(1100 * time.Millisecond)
	if _, err := ver.Verify(t.Context(), fresh.sign(t, fresh.hdr(), now.Unix(), body), body); err != nil {
		t.Errorf("new genuine kid on Plaid's retry: %v", err)
	}
	ver.mu.Lock()
	nUnknown, nKeys := len(ver.unknown), len(ver.keys)
	ver.mu.Unlock()
	if nUnknown > 16 || nKeys != 2 {
		t.Errorf("after the flood: %d negative entries (want ≤ 16), %d keys (want 2)", nUnknown, nKeys)
	}
}

// Issue 9.8: a key Plaid expires is refused within minutes (not after an
// hour's cache), and a cached key whose expired_at passes is refused at once.
func TestExpiredKeyRefusedWithinMinutes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := newSigner(t, "k")
	k := s.jwk()
	ver, _ := NewVerifier(Options{Now: clock, Fetch: func(context.Context, string) (Key, error) {
		mu.Lock()
		defer mu.Unlock()
		return k, nil
	}})
	body := []byte(`{}`)
	verify := func() error {
		_, err := ver.Verify(t.Context(), s.sign(t, s.hdr(), clock().Unix(), body), body)
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("fresh key: %v", err)
	}
	mu.Lock()
	exp := now.Unix()
	k.ExpiredAt = &exp // Plaid rotates the key
	mu.Unlock()
	advance(3 * time.Minute)
	if err := verify(); !errors.Is(err, ErrKeyExpired) || stepOf(err) != StepKey {
		t.Errorf("3 minutes after Plaid expired the key: Verify = %v, want ErrKeyExpired", err)
	}

	// expired_at in the future: usable until then, refused after, no refetch.
	s2 := newSigner(t, "k2")
	k2 := s2.jwk()
	later := clock().Add(30 * time.Second).Unix()
	k2.ExpiredAt = &later
	var fetches atomic.Int32
	ver2, _ := NewVerifier(Options{Now: clock, Fetch: func(context.Context, string) (Key, error) { fetches.Add(1); return k2, nil }})
	if _, err := ver2.Verify(t.Context(), s2.sign(t, s2.hdr(), clock().Unix(), body), body); err != nil {
		t.Fatalf("key before its expired_at: %v", err)
	}
	advance(31 * time.Second)
	if _, err := ver2.Verify(t.Context(), s2.sign(t, s2.hdr(), clock().Unix(), body), body); !errors.Is(err, ErrKeyExpired) {
		t.Errorf("cached key past its expired_at: %v, want ErrKeyExpired", err)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1 (expiry checked on use)", n)
	}
	if _, err := VerifyOffline(s2.sign(t, s2.hdr(), clock().Unix(), body), body, k2, clock()); !errors.Is(err, ErrKeyExpired) {
		t.Errorf("VerifyOffline past expired_at: %v", err)
	}
}

// Issue 9.8: iat must be a JSON number; a string iat is refused.
func TestStringIATRefused(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := newSigner(t, "k")
	body := []byte(`{}`)
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	tests := []struct {
		name, payload string
		ok            bool
	}{
		{"number", fmt.Sprintf(`{"iat":%d,"request_body_sha256":"%s"}`, now.Unix(), h), true},
		{"string", fmt.Sprintf(`{"iat":"%d","request_body_sha256":"%s"}`, now.Unix(), h), false},
		{"null", fmt.Sprintf(`{"iat":null,"request_body_sha256":"%s"}`, h), false},
		{"float", fmt.Sprintf(`{"iat":%d.5,"request_body_sha256":"%s"}`, now.Unix(), h), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := VerifyOffline(s.signPayload(t, tt.payload), body, s.jwk(), now)
			if tt.ok != (err == nil) || (!tt.ok && stepOf(err) != StepIssuedAt) {
				t.Errorf("VerifyOffline(iat %s) = %v, want ok=%v or step iat", tt.name, err, tt.ok)
			}
		})
	}
}

// Issue 9.8: Plaid refusing the tenant's credentials makes a new kid
// unavailable (503), shows in KeyFetchHealth, and known keys keep working.
func TestCredentialRefusalIsUnavailableAndUnhealthy(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := newSigner(t, "k")
	var refuse atomic.Bool
	refuse.Store(true)
	ver, _ := NewVerifier(Options{Now: func() time.Time { return now }, MissInterval: time.Nanosecond,
		Fetch: func(context.Context, string) (Key, error) {
			if refuse.Load() {
				return Key{}, fmt.Errorf("%w: INVALID_API_KEYS", ErrKeyAuth)
			}
			return s.jwk(), nil
		}})
	body := []byte(`{}`)
	tok := s.sign(t, s.hdr(), now.Unix(), body)
	if _, err := ver.Verify(t.Context(), tok, body); !Unavailable(err) {
		t.Errorf("Verify with refused credentials = %v, want Unavailable", err)
	}
	if err := ver.KeyFetchHealth(); !errors.Is(err, ErrKeyAuth) {
		t.Errorf("KeyFetchHealth = %v, want ErrKeyAuth", err)
	}
	refuse.Store(false)
	now = now.Add(time.Second)
	if _, err := ver.Verify(t.Context(), tok, body); err != nil {
		t.Fatalf("Verify after credentials fixed: %v", err)
	}
	if err := ver.KeyFetchHealth(); err != nil {
		t.Errorf("KeyFetchHealth after a good fetch = %v, want nil", err)
	}
	// Credentials break again: the known key keeps verifying through refreshes.
	refuse.Store(true)
	now = now.Add(10 * time.Minute)
	if _, err := ver.Verify(t.Context(), s.sign(t, s.hdr(), now.Unix(), body), body); err != nil {
		t.Errorf("known key with refused refresh: %v", err)
	}
	if err := ver.KeyFetchHealth(); !errors.Is(err, ErrKeyAuth) {
		t.Errorf("KeyFetchHealth after refused refresh = %v, want ErrKeyAuth", err)
	}
}
