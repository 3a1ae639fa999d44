// Package jwkp256 is the one parser of P-256 public keys given as JWK
// members (crv, x, y): Plaid's webhook verification keys (internal/webhook)
// and the EC keys of a plugin's JWKS (hostabi's jwt_verify) both go through
// it, so both refuse the same bad keys. It imports only the standard
// library, so any package of the module may use it.
//
// A key is accepted only if crv is "P-256", each coordinate is base64url
// (trailing "=" padding tolerated) of at most 32 bytes, and the point is on
// the curve (crypto/ecdsa checks it). A coordinate shorter than 32 bytes is
// left-padded with zeros: RFC 7518 §6.2.1.2 asks for the full 32 bytes, but
// some encoders drop leading zero bytes, and the padded value is the same
// number, so nothing a forger controls changes.
package jwkp256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Errors, wrapped with detail by PublicKey.
var (
	ErrCurve      = errors.New("jwkp256: curve is not P-256")
	ErrCoordinate = errors.New("jwkp256: bad P-256 coordinate")
	ErrNotOnCurve = errors.New("jwkp256: point not on P-256")
)

// Size is the byte length of a P-256 coordinate.
const Size = 32

// PublicKey returns the P-256 public key of a JWK's crv, x and y members.
func PublicKey(crv, x, y string) (*ecdsa.PublicKey, error) {
	if crv != "P-256" {
		return nil, fmt.Errorf("%w: %q", ErrCurve, crv)
	}
	var pt [1 + 2*Size]byte
	pt[0] = 4 // uncompressed point: 0x04 ‖ X ‖ Y
	if err := coordinate(pt[1:1+Size], x); err != nil {
		return nil, fmt.Errorf("%w: x", err)
	}
	if err := coordinate(pt[1+Size:], y); err != nil {
		return nil, fmt.Errorf("%w: y", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt[:])
	if err != nil {
		return nil, ErrNotOnCurve
	}
	return pub, nil
}

// coordinate decodes s into dst (Size bytes, big-endian, left-padded).
func coordinate(dst []byte, s string) error {
	s = strings.TrimRight(s, "=")
	if s == "" || base64.RawURLEncoding.DecodedLen(len(s)) > Size {
		return ErrCoordinate
	}
	var buf [Size]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(s))
	if err != nil || n == 0 {
		return ErrCoordinate
	}
	copy(dst[Size-n:], buf[:n])
	return nil
}
