// Package p256fixed verifies ECDSA P-256 (ES256) signatures made by a key
// known in advance, about twice as fast as crypto/ecdsa: the key's multiples
// are computed once, so the verification's u2·Q costs 33 point additions
// instead of a 256-bit scalar multiplication (issue 12: the signature was
// 70–85 µs of the ~200 µs of CPU an accepted webhook cost).
//
// Plaid signs every webhook with one of a few keys that live for months,
// so a verifier meets the same key thousands of times a second: the table
// (33 windows × 128 multiples, 396 KiB) is built once per key in a few
// milliseconds, when the key is fetched, and shared by every tenant.
//
// The point arithmetic is filippo.io/nistec's (the upstream of Go's own
// crypto/internal/fips140/nistec, same assembly); this package only
// chooses which points to add. Verification handles public data only, so
// it need not be constant time. The verification equation is the one of
// crypto/ecdsa (FIPS 186-5 6.4.2), and the tests check every answer
// against crypto/ecdsa.Verify: random valid and damaged signatures, edge
// scalars (0, 1, n-1, n, 2^256-1), and a fuzz target.
package p256fixed

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"math/big"
	"sync"
	"weak"

	"filippo.io/nistec"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The key's multiples are kept for signed 8-bit windows: the scalar is
// written as Σ dᵢ·2^(8i) with dᵢ in [-127, 128], so each window needs only
// the multiples 1..128 (a negative digit adds the negated point). A digit
// over 128 borrows from the next window, so the windows cover 257 bits:
// 33 of them, the last holding only a carry. Wider windows mean fewer
// additions and a larger table: 6 bits took 43 additions and 132 KiB,
// 8 bits take 33 and 396 KiB (RATIONALE "Why webhook signatures are
// checked with a precomputed key").
const (
	window  = 8
	windows = (256 + window) / window // 33: windows × window ≥ 257
	half    = 1 << (window - 1)       // 128
)

// n is P-256's group order.
var n = elliptic.P256().Params().N

// Key is a P-256 public key with its precomputed multiples. It is
// read-only once built and safe for concurrent use.
type Key struct {
	pub *ecdsa.PublicKey
	// tab[i][d-1] = d·2^(8i)·Q for d in 1..128.
	tab [windows][half]nistec.P256Point
}

// Public returns the key as crypto/ecdsa sees it.
func (k *Key) Public() *ecdsa.PublicKey { return k.pub }

// ErrNotP256 is returned by New for a key that is not a P-256 point.
var ErrNotP256 = errors.New("p256fixed: not a P-256 public key")

var shared = struct {
	mu   sync.Mutex
	keys map[string]weak.Pointer[Key]
}{keys: map[string]weak.Pointer[Key]{}}

// New returns the precomputed key for pub. Keys are shared: while any
// caller holds the Key of a point, New returns that one instead of
// building another (every tenant verifies Plaid's same keys). The first
// call registers the jwx verifier that takes a *Key (registerJWS), so
// wherever a Key exists, jws.NewVerifier(jwa.ES256) accepts it.
func New(pub *ecdsa.PublicKey) (*Key, error) {
	registerOnce.Do(registerJWS)
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, ErrNotP256
	}
	ek, err := pub.ECDH() // checks the point is on the curve
	if err != nil || ek.Curve() != ecdh.P256() {
		return nil, ErrNotP256
	}
	enc := ek.Bytes() // uncompressed point, 65 bytes
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if k := shared.keys[string(enc)].Value(); k != nil {
		return k, nil
	}
	q, err := nistec.NewP256Point().SetBytes(enc)
	if err != nil {
		return nil, ErrNotP256
	}
	k := &Key{pub: pub}
	base := q // 2^(8i)·Q
	for i := range windows {
		k.tab[i][0].Set(base)
		for d := 1; d < half; d++ {
			k.tab[i][d].Add(&k.tab[i][d-1], base)
		}
		base = nistec.NewP256Point().Double(&k.tab[i][half-1]) // 2·128 = 2^8
	}
	for s, w := range shared.keys { // forget keys nobody holds any more
		if w.Value() == nil {
			delete(shared.keys, s)
		}
	}
	shared.keys[string(enc)] = weak.Make(k)
	return k, nil
}

// Verify reports whether (r, s), two big-endian integers, is k's valid
// ECDSA signature of hash, as crypto/ecdsa.Verify would. hash is the
// message's SHA-256 (a longer hash is cut to its leftmost 256 bits, as
// crypto/ecdsa does).
func (k *Key) Verify(hash, r, s []byte) bool {
	v := scratchPool.Get().(*scratch)
	defer scratchPool.Put(v)
	ri, si := v.r.SetBytes(r), v.s.SetBytes(s)
	if ri.Sign() == 0 || si.Sign() == 0 || ri.Cmp(n) >= 0 || si.Cmp(n) >= 0 {
		return false
	}
	if len(hash) > 32 {
		hash = hash[:32]
	}
	e := v.e.SetBytes(hash)
	w := v.w.ModInverse(si, n)
	u1 := v.u1.Mul(e, w)
	u1.Mod(u1, n)
	u2 := v.u2.Mul(ri, w)
	u2.Mod(u2, n)

	p, err := v.p.ScalarBaseMult(u1.FillBytes(v.b1[:]))
	if err != nil {
		return false
	}
	p.Add(p, k.mul(&v.acc, &v.neg, u2.FillBytes(v.b2[:])))
	x, err := p.BytesX() // fails for the point at infinity
	if err != nil {
		return false
	}
	xi := v.x.SetBytes(x)
	if xi.Cmp(n) >= 0 { // x < p < 2n
		xi.Sub(xi, n)
	}
	return xi.Cmp(ri) == 0
}

// scratch is one verification's working values, pooled so that the
// big.Ints keep their buffers (issue 12: ~1 KiB of garbage a webhook).
type scratch struct {
	r, s, e, w, u1, u2, x big.Int
	b1, b2                [32]byte
	p, acc, neg           nistec.P256Point
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// infinity is the point at infinity (the sum of no points); read only.
var infinity = nistec.NewP256Point()

// mul returns u·Q for a 32-byte big-endian u < n, from the table: one
// addition per non-zero signed digit.
func (k *Key) mul(acc, neg *nistec.P256Point, u []byte) *nistec.P256Point {
	acc.Set(infinity)
	empty := true // acc is still infinity: the first point is set, not added
	carry := 0
	for i := range windows {
		d := bits(u, i*window) + carry
		carry = 0
		if d > half {
			d -= 2 * half
			carry = 1
		}
		var pt *nistec.P256Point
		switch {
		case d > 0:
			pt = &k.tab[i][d-1]
		case d < 0:
			pt = neg.Negate(&k.tab[i][-d-1])
		default:
			continue
		}
		if empty {
			acc.Set(pt)
			empty = false
		} else {
			acc.Add(acc, pt)
		}
	}
	// u < 2^256 and windows × window ≥ 257: the top window holds only the
	// carry out of the one below (0 or 1), so no carry is left over.
	return acc
}

// bits returns the window (one byte) of the big-endian u starting at bit
// off (bit 0 is the least significant); past the top it is zero.
func bits(u []byte, off int) int {
	if i := len(u) - 1 - off/8; i >= 0 {
		return int(u[i])
	}
	return 0
}

// bits reads whole bytes: a window of another width does not compile.
var _ = [1]struct{}{}[window-8]

// jwsVerifier is jwx's ES256 verifier with one more key type: a *Key is
// checked here, with its table; any other key goes to the verifier jwx had
// (so the rest of the process sees jwx's behaviour unchanged).
type jwsVerifier struct{ next jws.Verifier }

func (v *jwsVerifier) Verify(payload, sig []byte, key any) error {
	k, ok := key.(*Key)
	if !ok {
		return v.next.Verify(payload, sig, key)
	}
	if len(sig) != 64 { // JWS ES256: r‖s, 32 bytes each (RFC 7518 3.4)
		return errSigLength
	}
	h := sha256.Sum256(payload)
	if !k.Verify(h[:], sig[:32], sig[32:]) {
		return errBadSignature
	}
	return nil
}

var (
	errSigLength    = errors.New("p256fixed: ES256 signature is not 64 bytes")
	errBadSignature = errors.New("p256fixed: signature does not verify")
)

var registerOnce sync.Once

// registerJWS registers, through jwx's extension point for algorithm
// implementations (jws.RegisterVerifier), jwx's ES256 verifier extended to
// accept a *Key: jws.NewVerifier(jwa.ES256).Verify(input, sig, key) then
// uses the table for a *Key and jwx's own code otherwise. The one verifier
// is made here, not per call.
func registerJWS() {
	next, err := jws.NewVerifier(jwa.ES256)
	if err != nil {
		panic("p256fixed: jwx has no ES256 verifier: " + err.Error())
	}
	v := &jwsVerifier{next}
	jws.RegisterVerifier(jwa.ES256, jws.VerifierFactoryFn(func() (jws.Verifier, error) { return v, nil }))
}
