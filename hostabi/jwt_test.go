package hostabi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi/abi"
)

var b64 = base64.RawURLEncoding

func hs256(t testing.TB, key []byte, hdr, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	s := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + b64.EncodeToString(m.Sum(nil))
}

func es256(t testing.TB, k *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": kid})
	c, _ := json.Marshal(claims)
	s := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	d := sha256.Sum256([]byte(s))
	r, sg, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sg.FillBytes(sig[32:])
	return s + "." + b64.EncodeToString(sig)
}

func jwks(k *ecdsa.PrivateKey, kid string) []byte {
	pub, err := k.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		panic(err)
	}
	return []byte(fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":%q,"x":%q,"y":%q}]}`,
		kid, b64.EncodeToString(pub[1:33]), b64.EncodeToString(pub[33:])))
}

// Issue 10.6: with the deprecated big.Int coordinates gone, a JWK whose
// point is not on P-256 is still refused, and a short (leading zeros
// dropped) coordinate is still read.
func TestJWKSPointChecks(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := jwks(k, "k")
	if _, err := newJWTVerifier(JWTOptions{JWKS: good}, nil, time.Now); err != nil {
		t.Fatalf("newJWTVerifier(good key) = %v", err)
	}
	pub, _ := k.PublicKey.Bytes()
	y := append([]byte(nil), pub[33:]...)
	y[31] ^= 1 // off the curve
	bad := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":%q,"y":%q}]}`,
		b64.EncodeToString(pub[1:33]), b64.EncodeToString(y))
	if _, err := newJWTVerifier(JWTOptions{JWKS: []byte(bad)}, nil, time.Now); err == nil || !strings.Contains(err.Error(), "not on P-256") {
		t.Errorf("newJWTVerifier(off-curve key) = %v, want not on P-256", err)
	}
	long := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":%q,"y":%q}]}`,
		b64.EncodeToString(append([]byte{1}, pub[1:33]...)), b64.EncodeToString(pub[33:]))
	if _, err := newJWTVerifier(JWTOptions{JWKS: []byte(long)}, nil, time.Now); err == nil {
		t.Error("newJWTVerifier(33-byte coordinate) = nil, want an error")
	}
	// Issue 10.3: the coordinates are read by internal/jwkp256 (its table
	// test has the bad inputs); a short x (leading zero byte dropped) is
	// still read here.
	for range 10000 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if pub, _ := k.PublicKey.Bytes(); pub[1] == 0 {
			short := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":%q,"y":%q}]}`,
				b64.EncodeToString(pub[2:33]), b64.EncodeToString(pub[33:]))
			if _, err := newJWTVerifier(JWTOptions{JWKS: []byte(short)}, nil, time.Now); err != nil {
				t.Errorf("newJWTVerifier(31-byte x) = %v, want nil", err)
			}
			return
		}
	}
	t.Error("no key with a leading zero byte in 10000 tries")
}

func TestJWTVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := newJWTVerifier(JWTOptions{JWKS: jwks(ek, "ec1"), Issuer: "iss1", Audience: "app"},
		map[string][]byte{"main": secret}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]any{"sub": "alice", "iss": "iss1", "aud": []string{"x", "app"}, "exp": now.Unix() + 60, "role": "admin", "n": 7}
	with := func(k string, val any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		if val == nil {
			delete(m, k)
		} else {
			m[k] = val
		}
		return m
	}
	hsHdr := map[string]any{"alg": "HS256", "typ": "JWT"}
	valid := hs256(t, secret, hsHdr, good)
	tests := []struct {
		name, tok string
		want      int32
	}{
		{"hs256 valid", valid, abi.JWTValid},
		{"hs256 by kid", hs256(t, secret, map[string]any{"alg": "HS256", "kid": "main"}, good), abi.JWTValid},
		{"es256 valid", es256(t, ek, "ec1", good), abi.JWTValid},
		{"es256 other key", es256(t, other, "ec1", good), abi.JWTBadSignature},
		{"es256 unknown kid", es256(t, ek, "nope", good), abi.JWTUnknownKey},
		{"hs256 wrong secret", hs256(t, []byte("wrong"), hsHdr, good), abi.JWTBadSignature},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + b64.EncodeToString([]byte(`{"sub":"x"}`)) + ".", abi.JWTBadAlg},
		{"alg HS512", hs256(t, secret, map[string]any{"alg": "HS512"}, good), abi.JWTBadAlg},
		{"es key used as RS256", strings.Replace(es256(t, ek, "ec1", good), b64.EncodeToString([]byte(`{"alg":"ES256","kid":"ec1"}`)), b64.EncodeToString([]byte(`{"alg":"RS256","kid":"ec1"}`)), 1), abi.JWTBadAlg},
		{"expired", hs256(t, secret, hsHdr, with("exp", now.Unix()-3600)), abi.JWTExpired},
		{"within leeway", hs256(t, secret, hsHdr, with("exp", now.Unix()-10)), abi.JWTValid},
		{"not yet valid", hs256(t, secret, hsHdr, with("nbf", now.Unix()+3600)), abi.JWTNotYetValid},
		{"wrong issuer", hs256(t, secret, hsHdr, with("iss", "evil")), abi.JWTBadIssuer},
		{"wrong audience", hs256(t, secret, hsHdr, with("aud", "other")), abi.JWTBadAudience},
		{"tampered payload", strings.Join([]string{strings.Split(valid, ".")[0], b64.EncodeToString([]byte(`{"sub":"root","iss":"iss1","aud":"app"}`)), strings.Split(valid, ".")[2]}, "."), abi.JWTBadSignature},
		{"two parts", "a.b", abi.JWTMalformed},
		{"four parts", valid + ".x", abi.JWTMalformed},
		{"not base64", "!!.!!.!!", abi.JWTMalformed},
		{"crit header", hs256(t, secret, map[string]any{"alg": "HS256", "crit": []string{"x"}}, good), abi.JWTMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // second time from the cache
				e, got := v.verify([]byte(tt.tok))
				if got != tt.want {
					t.Fatalf("verify = %d, want %d", got, tt.want)
				}
				if got == abi.JWTValid && (string(e.claims["sub"]) != "alice" || string(e.claims["n"]) != "7") {
					t.Fatalf("claims = %q", e.claims)
				}
			}
		})
	}
	// A cached token still expires.
	now = now.Add(2 * time.Hour)
	if _, got := v.verify([]byte(valid)); got != abi.JWTExpired {
		t.Errorf("cached token after exp: %d, want expired", got)
	}
}

// FuzzJWTVerify: never panics, and nothing but the signed header and
// payload is ever accepted.
func FuzzJWTVerify(f *testing.F) {
	secret := []byte("fuzz-secret")
	now := time.Unix(1_800_000_000, 0)
	claims := map[string]any{"sub": "alice", "exp": now.Unix() + 60}
	valid := hs256(f, secret, map[string]any{"alg": "HS256"}, claims)
	f.Add(valid)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	parts := strings.Split(valid, ".")
	f.Fuzz(func(t *testing.T, tok string) {
		v, _ := newJWTVerifier(JWTOptions{}, map[string][]byte{"k": secret}, func() time.Time { return now })
		_, code := v.verify([]byte(tok))
		if code == abi.JWTValid {
			p := strings.SplitN(tok, ".", 3)
			if len(p) != 3 || p[0] != parts[0] || p[1] != parts[1] {
				t.Fatalf("accepted a token not signed by the key: %q", tok)
			}
		}
	})
}

func BenchmarkJWTVerify(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	tok := []byte(hs256(b, secret, map[string]any{"alg": "HS256"}, map[string]any{"sub": "alice", "exp": now.Unix() + 60}))
	for _, cached := range []bool{true, false} {
		b.Run(fmt.Sprintf("cached=%v", cached), func(b *testing.B) {
			v, _ := newJWTVerifier(JWTOptions{}, map[string][]byte{"k": secret}, func() time.Time { return now })
			b.ReportAllocs()
			for b.Loop() {
				if !cached {
					clear(v.cache)
				}
				if _, c := v.verify(tok); c != abi.JWTValid {
					b.Fatal(c)
				}
			}
		})
	}
}
