package hostabi

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/safeclose/safeclose/hostabi/abi"
	"github.com/safeclose/safeclose/internal/jwkp256"
)

// jwtVerifier checks compact JWTs for jwt_verify. It parses the token
// directly with the standard library (a generic JOSE parse costs ~14 µs per
// token, this ~2.5 µs) and caches valid tokens so a session presenting the
// same token again costs a map lookup. See RATIONALE.md "Why JWTs are
// checked in the host".
type jwtVerifier struct {
	hmac     map[string][]byte
	keys     map[string]crypto.PublicKey // kid → *ecdsa.PublicKey | *rsa.PublicKey
	iss, aud string
	leeway   time.Duration
	now      func() time.Time

	mu    sync.RWMutex
	cache map[string]*jwtEntry
}

type jwtEntry struct {
	exp, nbf int64 // unix seconds; 0 when absent
	claims   map[string][]byte
}

const (
	maxJWT        = 8 << 10
	jwtCacheLimit = 10000
)

// newJWTVerifier keeps, of secrets, the HS256 keys o.HMACSecrets names
// (JWTOptions.HMACSecrets): a token's kid picks among them, so with several
// secrets the names are required.
func newJWTVerifier(o JWTOptions, secrets map[string][]byte, now func() time.Time) (*jwtVerifier, error) {
	switch {
	case o.HMACSecrets != nil: // named ones only; [] names none
		only := make(map[string][]byte, len(o.HMACSecrets))
		for _, name := range o.HMACSecrets {
			k, ok := secrets[name]
			if !ok {
				return nil, fmt.Errorf("jwt.secrets: %q is not one of the plugin's secrets", name)
			}
			only[name] = k
		}
		secrets = only
	case len(secrets) > 1:
		return nil, fmt.Errorf("jwt.secrets is required with several secrets (%d): a token's kid picks among the secrets it allows, so name the ones that verify HS256 session tokens ([] for none)",
			len(secrets))
	}
	v := &jwtVerifier{
		hmac: secrets, keys: map[string]crypto.PublicKey{}, iss: o.Issuer, aud: o.Audience,
		leeway: o.Leeway, now: now, cache: map[string]*jwtEntry{},
	}
	if v.leeway == 0 {
		v.leeway = DefaultJWTLeeway
	}
	if len(o.JWKS) > 0 {
		if err := v.parseJWKS(o.JWKS); err != nil {
			return nil, fmt.Errorf("jwt.jwks: %w", err)
		}
	}
	return v, nil
}

func (v *jwtVerifier) parseJWKS(b []byte) error {
	var set struct {
		Keys []struct {
			Kty, Kid, Crv, X, Y, N, E, Alg, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return err
	}
	for i, k := range set.Keys {
		switch k.Kty {
		case "EC":
			pub, err := jwkp256.PublicKey(k.Crv, k.X, k.Y)
			if err != nil {
				return fmt.Errorf("keys[%d]: %w", i, err)
			}
			v.keys[k.Kid] = pub
		case "RSA":
			n, err1 := b64int(k.N)
			e, err2 := b64int(k.E)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("keys[%d]: %w", i, err)
			}
			if n.BitLen() < 2048 {
				return fmt.Errorf("keys[%d]: RSA key under 2048 bits", i)
			}
			v.keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		default:
			return fmt.Errorf("keys[%d]: kty %q unsupported (EC or RSA)", i, k.Kty)
		}
	}
	return nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

// verify returns the token's entry and abi.JWTValid, or a failure code.
func (v *jwtVerifier) verify(tok []byte) (*jwtEntry, int32) {
	if len(v.hmac) == 0 && len(v.keys) == 0 {
		return nil, abi.JWTNoKeys
	}
	now := v.now()
	v.mu.RLock()
	e := v.cache[string(tok)]
	v.mu.RUnlock()
	if e == nil {
		var code int32
		if e, code = v.check(tok); code != abi.JWTValid {
			return nil, code
		}
		v.mu.Lock()
		if len(v.cache) >= jwtCacheLimit {
			clear(v.cache)
		}
		v.cache[string(tok)] = e
		v.mu.Unlock()
	}
	lw := int64(v.leeway / time.Second)
	if e.exp != 0 && now.Unix() > e.exp+lw {
		return nil, abi.JWTExpired
	}
	if e.nbf != 0 && now.Unix()+lw < e.nbf {
		return nil, abi.JWTNotYetValid
	}
	return e, abi.JWTValid
}

// check does the uncached work: structure, alg, key, signature, claims.
func (v *jwtVerifier) check(tok []byte) (*jwtEntry, int32) {
	if len(tok) > maxJWT {
		return nil, abi.JWTMalformed
	}
	h64, rest, ok1 := bytes.Cut(tok, []byte("."))
	p64, s64, ok2 := bytes.Cut(rest, []byte("."))
	if !ok1 || !ok2 || bytes.IndexByte(s64, '.') >= 0 {
		return nil, abi.JWTMalformed
	}
	hb, err1 := decodeB64(h64)
	pb, err2 := decodeB64(p64)
	sig, err3 := decodeB64(s64)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, abi.JWTMalformed
	}
	var hdr struct {
		Alg  string `json:"alg"`
		Kid  string `json:"kid"`
		Crit []any  `json:"crit"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, abi.JWTMalformed
	}
	if len(hdr.Crit) > 0 {
		return nil, abi.JWTMalformed
	}
	signed := tok[:len(h64)+1+len(p64)]
	switch hdr.Alg {
	case "HS256":
		key, ok := v.hmac[hdr.Kid]
		if !ok && hdr.Kid == "" && len(v.hmac) == 1 {
			for _, k := range v.hmac {
				key, ok = k, true
			}
		}
		if !ok {
			return nil, abi.JWTUnknownKey
		}
		m := hmac.New(sha256.New, key)
		m.Write(signed)
		if !hmac.Equal(m.Sum(nil), sig) {
			return nil, abi.JWTBadSignature
		}
	case "ES256", "RS256":
		key, ok := v.keys[hdr.Kid]
		if !ok && hdr.Kid == "" && len(v.keys) == 1 {
			for _, k := range v.keys {
				key, ok = k, true
			}
		}
		if !ok {
			return nil, abi.JWTUnknownKey
		}
		digest := sha256.Sum256(signed)
		switch k := key.(type) {
		case *ecdsa.PublicKey:
			if hdr.Alg != "ES256" {
				return nil, abi.JWTBadAlg
			}
			if len(sig) != 64 {
				return nil, abi.JWTBadSignature
			}
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			if !ecdsa.Verify(k, digest[:], r, s) {
				return nil, abi.JWTBadSignature
			}
		case *rsa.PublicKey:
			if hdr.Alg != "RS256" {
				return nil, abi.JWTBadAlg
			}
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
				return nil, abi.JWTBadSignature
			}
		}
	default:
		return nil, abi.JWTBadAlg
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(pb, &raw) != nil {
		return nil, abi.JWTMalformed
	}
	e := &jwtEntry{claims: make(map[string][]byte, len(raw))}
	for k, r := range raw {
		var s string
		if len(r) > 0 && r[0] == '"' && json.Unmarshal(r, &s) == nil {
			e.claims[k] = []byte(s)
		} else {
			e.claims[k] = []byte(r)
		}
	}
	var err error
	if e.exp, err = numClaim(raw["exp"]); err != nil {
		return nil, abi.JWTMalformed
	}
	if e.nbf, err = numClaim(raw["nbf"]); err != nil {
		return nil, abi.JWTMalformed
	}
	if v.iss != "" && string(e.claims["iss"]) != v.iss {
		return nil, abi.JWTBadIssuer
	}
	if v.aud != "" && !hasAudience(raw["aud"], v.aud) {
		return nil, abi.JWTBadAudience
	}
	return e, abi.JWTValid
}

func decodeB64(b []byte) ([]byte, error) {
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(b)))
	n, err := base64.RawURLEncoding.Decode(out, b)
	return out[:n], err
}

func numClaim(r json.RawMessage) (int64, error) {
	if r == nil {
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(r, &f); err != nil {
		return 0, err
	}
	return int64(f), nil
}

func hasAudience(r json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(r, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(r, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}
