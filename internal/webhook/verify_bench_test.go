package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"
)

// BenchmarkP256VerifyBaseline is BenchmarkVerify's floor in the same run:
// the stdlib ES256 signature check alone (SHA-256 of the signing input and
// ecdsa.Verify), with nothing parsed.
func BenchmarkP256VerifyBaseline(b *testing.B) {
	s := newSigner(b, "k")
	tok := s.sign(b, s.hdr(), time.Now().Unix(), make([]byte, 400))
	in, sig := baselineInput(b, tok)
	r, ss := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(in)
		if !ecdsa.Verify(&s.key.PublicKey, h[:], r, ss) {
			b.Fatal("baseline signature does not verify")
		}
	}
}

// TestP256VerifyBaselineSetup keeps the baseline honest: its input verifies.
func TestP256VerifyBaselineSetup(t *testing.T) {
	t.Parallel()
	s := newSigner(t, "k")
	tok := s.sign(t, s.hdr(), time.Now().Unix(), []byte("{}"))
	in, sig := baselineInput(t, tok)
	h := sha256.Sum256(in)
	if !ecdsa.Verify(&s.key.PublicKey, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("baseline input does not verify")
	}
}

func baselineInput(tb testing.TB, tok string) ([]byte, []byte) {
	tb.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		tb.Fatalf("signature: %v (%d bytes)", err, len(sig))
	}
	return []byte(tok[:i]), sig
}

// verifyOnce is BenchmarkVerify's setup and one iteration, shared with the
// allocation test.
func verifyOnce(tb testing.TB) func() {
	tb.Helper()
	s := newSigner(tb, "k")
	body := make([]byte, 400)
	tok := s.sign(tb, s.hdr(), time.Now().Unix(), body)
	ver, err := NewVerifier(Options{Fetch: func(context.Context, string) (Key, error) { return s.jwk(), nil }})
	if err != nil {
		tb.Fatal(err)
	}
	return func() {
		if _, err := ver.Verify(context.Background(), tok, body); err != nil {
			tb.Fatal(err)
		}
	}
}
