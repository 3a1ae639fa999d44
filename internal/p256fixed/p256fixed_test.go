package p256fixed

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"filippo.io/nistec"
)

func newKey(t testing.TB) (*ecdsa.PrivateKey, *Key) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

func b32(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }

// agree checks that k.Verify answers as crypto/ecdsa.Verify for (hash, r, s)
// and returns the answer.
func agree(t *testing.T, k *Key, hash []byte, r, s *big.Int) bool {
	t.Helper()
	want := ecdsa.Verify(k.Public(), hash, r, s)
	var rb, sb []byte
	if r.Sign() >= 0 && r.BitLen() <= 256 {
		rb = b32(r)
	} else {
		rb = r.Bytes()
	}
	if s.Sign() >= 0 && s.BitLen() <= 256 {
		sb = b32(s)
	} else {
		sb = s.Bytes()
	}
	if got := k.Verify(hash, rb, sb); got != want {
		t.Fatalf("Verify(hash %x, r %x, s %x) = %v; crypto/ecdsa says %v", hash, r, s, got, want)
	}
	return want
}

// Valid signatures verify, and every damaged one is refused, as
// crypto/ecdsa answers, over many keys and messages.
func TestVerifyMatchesCryptoECDSA(t *testing.T) {
	one := big.NewInt(1)
	for range 20 {
		priv, k := newKey(t)
		for m := range 20 {
			msg := make([]byte, 1+m*7)
			rand.Read(msg)
			h := sha256.Sum256(msg)
			r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
			if err != nil {
				t.Fatal(err)
			}
			if !agree(t, k, h[:], r, s) {
				t.Fatal("a fresh signature does not verify")
			}
			// ECDSA also accepts (r, n-s); JWS does not forbid it.
			if !agree(t, k, h[:], r, new(big.Int).Sub(n, s)) {
				t.Fatal("(r, n-s) does not verify")
			}
			other := h
			other[mrand.IntN(32)] ^= 1 << mrand.IntN(8)
			if agree(t, k, other[:], r, s) {
				t.Fatal("a signature verified another hash")
			}
			if agree(t, k, h[:], new(big.Int).Add(r, one), s) || agree(t, k, h[:], r, new(big.Int).Add(s, one)) {
				t.Fatal("a damaged signature verified")
			}
			if agree(t, k, h[:], s, r) {
				t.Fatal("swapped r and s verified")
			}
			if agree(t, k, h[:], new(big.Int).Add(r, n), s) || agree(t, k, h[:], r, new(big.Int).Add(s, n)) {
				t.Fatal("r+n or s+n verified")
			}
		}
	}
}

// A signature by another key is refused.
func TestVerifyRefusesOtherKey(t *testing.T) {
	priv, _ := newKey(t)
	_, k2 := newKey(t)
	h := sha256.Sum256([]byte("webhook"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	if agree(t, k2, h[:], r, s) {
		t.Fatal("another key's signature verified")
	}
}

// Edge values of r, s and the hash give crypto/ecdsa's answers.
func TestVerifyEdgeScalars(t *testing.T) {
	priv, k := newKey(t)
	h := sha256.Sum256([]byte("edge"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	max256 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	edges := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2), new(big.Int).Sub(n, big.NewInt(1)), n, new(big.Int).Add(n, big.NewInt(1)), max256}
	for _, e := range edges {
		agree(t, k, h[:], e, s)
		agree(t, k, h[:], r, e)
		agree(t, k, h[:], e, e)
		agree(t, k, b32mod(e), r, s)
	}
	// Hashes ≡ 0 mod n and ≡ r mod n: u1·G is the point at infinity or
	// cancels u2·Q's x.
	for _, hv := range []*big.Int{big.NewInt(0), n, max256} {
		agree(t, k, b32(hv), r, s)
	}
	// A hash longer than 32 bytes is cut to its first 32, as crypto/ecdsa does.
	long := append(h[:], 0xff, 0x00, 0x01)
	if !agree(t, k, long, r, s) {
		t.Fatal("a long hash whose first 32 bytes were signed did not verify")
	}
	// A short hash (fewer than 32 bytes) is a smaller integer, not padded.
	agree(t, k, h[:20], r, s)
}

func b32mod(x *big.Int) []byte {
	if x.BitLen() > 256 {
		return x.Bytes()
	}
	return b32(x)
}

// A signature whose u2 makes every window digit hit the table's edges
// (digits 128, -127 and carries; the patterns of 6-bit windows too)
// still verifies: the recoding covers all of them. s = r·u2⁻¹ for chosen u2 gives such signatures for a known
// point R = u1·G + u2·Q with the private key.
func TestVerifyChosenU2Digits(t *testing.T) {
	priv, k := newKey(t)
	raw, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw)
	for _, pat := range []string{
		"2082082082082082082082082082082082082082082082082082082082082082",  // 100000 patterns
		"fbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefbefb", // 111110 patterns
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"0000000000000000000000000000000000000000000000000000000000000001",
		"8000000000000000000000000000000000000000000000000000000000000000",
		"8080808080808080808080808080808080808080808080808080808080808080", // every digit 128 (half)
		"8181818181818181818181818181818181818181818181818181818181818181", // every digit -127, carrying
		"7f817f817f817f817f817f817f817f817f817f817f817f817f817f817f817f81", // -127 carrying into 127: 128
	} {
		u2, _ := new(big.Int).SetString(pat, 16)
		u2.Mod(u2, n)
		if u2.Sign() == 0 {
			continue
		}
		// Pick k' random, R = k'·G, r = R.x mod n; we need u2 = r/s, so
		// s = r/u2, and u1 = e/s must equal (k' - u2·d)·... : choose e so
		// that u1·G + u2·Q = R, i.e. e = s·(k' - u2·d) mod n.
		kk, _ := rand.Int(rand.Reader, n)
		R, err := nistec.NewP256Point().ScalarBaseMult(b32(kk))
		if err != nil {
			t.Fatal(err)
		}
		rx, err := R.BytesX()
		if err != nil {
			t.Fatal(err)
		}
		r := new(big.Int).Mod(new(big.Int).SetBytes(rx), n)
		s := new(big.Int).Mul(r, new(big.Int).ModInverse(u2, n))
		s.Mod(s, n)
		e := new(big.Int).Sub(kk, new(big.Int).Mul(u2, d))
		e.Mul(e, s)
		e.Mod(e, n)
		if !agree(t, k, b32(e), r, s) {
			t.Fatalf("u2 %s: the constructed signature does not verify", pat)
		}
	}
}

// Keys are built once while someone holds them, and a key that is not on
// P-256 is refused.
func TestNewSharesAndValidates(t *testing.T) {
	priv, k := newKey(t)
	pub := priv.PublicKey
	k2, err := New(&pub)
	if err != nil || k2 != k {
		t.Fatalf("New of the same point = %p, %v; want the shared %p", k2, err, k)
	}
	runtime.KeepAlive(k)
	enc, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	enc[64] ^= 1 // y off by one: not on the curve
	//lint:ignore SA1019 an off-curve key can only be built from raw coordinates
	bad := ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(enc[1:33]), Y: new(big.Int).SetBytes(enc[33:])}
	if _, err := New(&bad); err == nil {
		t.Fatal("a point off the curve was accepted")
	}
	if _, err := New(nil); err == nil {
		t.Fatal("a nil key was accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := New(&p384.PublicKey); err == nil {
		t.Fatal("a P-384 key was accepted")
	}
}

// FuzzVerifyMatchesCryptoECDSA: for any hash and signature bytes the
// answer is crypto/ecdsa's.
func FuzzVerifyMatchesCryptoECDSA(f *testing.F) {
	priv, k := newKey(f)
	h := sha256.Sum256([]byte("seed"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	f.Add(h[:], b32(r), b32(s))
	f.Add(h[:], b32(r), b32(new(big.Int).Sub(n, s)))
	f.Add([]byte{}, []byte{1}, []byte{1})
	f.Fuzz(func(t *testing.T, hash, rb, sb []byte) {
		if len(rb) > 40 || len(sb) > 40 {
			return
		}
		want := ecdsa.Verify(k.Public(), hash, new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb))
		if got := k.Verify(hash, rb, sb); got != want {
			t.Fatalf("Verify(%x, %x, %x) = %v; crypto/ecdsa says %v", hash, rb, sb, got, want)
		}
		// The fuzzer rarely finds a valid signature by itself: sign the
		// fuzzed hash and check the answer stays crypto/ecdsa's.
		if len(hash) > 0 {
			r, s, err := ecdsa.Sign(rand.Reader, priv, hash)
			if err == nil && !k.Verify(hash, b32(r), b32(s)) {
				t.Fatalf("a fresh signature of %x does not verify", hash)
			}
		}
	})
}

func BenchmarkFixedKeyVerify(b *testing.B) {
	priv, k := newKey(b)
	h := sha256.Sum256([]byte("bench"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	rb, sb := b32(r), b32(s)
	for b.Loop() {
		if !k.Verify(h[:], rb, sb) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkCryptoECDSAVerify is the baseline: the same check by crypto/ecdsa.
func BenchmarkCryptoECDSAVerify(b *testing.B) {
	priv, _ := newKey(b)
	h := sha256.Sum256([]byte("bench"))
	r, s, _ := ecdsa.Sign(rand.Reader, priv, h[:])
	for b.Loop() {
		if !ecdsa.Verify(&priv.PublicKey, h[:], r, s) {
			b.Fatal("does not verify")
		}
	}
}

func BenchmarkNew(b *testing.B) {
	priv, _ := newKey(b)
	for b.Loop() {
		shared.mu.Lock()
		clear(shared.keys)
		shared.mu.Unlock()
		if _, err := New(&priv.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}

// Verifications running at once (they share pooled scratch values) each
// give their own answer.
func TestVerifyConcurrent(t *testing.T) {
	priv, k := newKey(t)
	type sig struct {
		h    [32]byte
		r, s []byte
		ok   bool
	}
	var sigs []sig
	for i := range 16 {
		h := sha256.Sum256([]byte{byte(i)})
		r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			h[0] ^= 1 // damaged: must be refused
		}
		sigs = append(sigs, sig{h, b32(r), b32(s), i%2 == 0})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 40 {
				c := sigs[(g+j)%len(sigs)]
				if got := k.Verify(c.h[:], c.r, c.s); got != c.ok {
					errs <- fmt.Sprintf("signature %d: Verify = %v, want %v", (g+j)%len(sigs), got, c.ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
