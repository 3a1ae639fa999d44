package jwkp256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
)

// point returns the x and y coordinates (32 bytes each) of a P-256 key
// whose x starts with a zero byte when leadingZero is set.
func point(t *testing.T, leadingZero bool) (x, y []byte) {
	t.Helper()
	for range 10000 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := k.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if !leadingZero || b[1] == 0 {
			return b[1 : 1+Size], b[1+Size:]
		}
	}
	t.Fatal("no key with a leading zero byte in 10000 tries")
	return nil, nil
}

// Issue 10.3: one P-256 JWK parser for the webhook verifier and the
// plugins' JWKS; it refuses every bad key either used to refuse.
func TestPublicKey(t *testing.T) {
	t.Parallel()
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := point(t, false)
	zx, zy := point(t, true)
	offY := append([]byte(nil), y...)
	offY[Size-1] ^= 1
	tests := []struct {
		name    string
		crv     string
		x, y    string
		wantErr error
		wantX   []byte
	}{
		{name: "good", crv: "P-256", x: b64(x), y: b64(y), wantX: x},
		{name: "padded base64", crv: "P-256", x: base64.URLEncoding.EncodeToString(x), y: base64.URLEncoding.EncodeToString(y), wantX: x},
		{name: "leading zero dropped", crv: "P-256", x: b64(zx[1:]), y: b64(zy), wantX: zx},
		{name: "wrong crv", crv: "P-384", x: b64(x), y: b64(y), wantErr: ErrCurve},
		{name: "empty crv", crv: "", x: b64(x), y: b64(y), wantErr: ErrCurve},
		{name: "crv case", crv: "p-256", x: b64(x), y: b64(y), wantErr: ErrCurve},
		{name: "off curve", crv: "P-256", x: b64(x), y: b64(offY), wantErr: ErrNotOnCurve},
		{name: "swapped", crv: "P-256", x: b64(y), y: b64(x), wantErr: ErrNotOnCurve},
		{name: "zero point", crv: "P-256", x: b64(make([]byte, Size)), y: b64(make([]byte, Size)), wantErr: ErrNotOnCurve},
		{name: "short (truncated) x", crv: "P-256", x: b64(x[:16]), y: b64(y), wantErr: ErrNotOnCurve},
		{name: "empty x", crv: "P-256", x: "", y: b64(y), wantErr: ErrCoordinate},
		{name: "empty y", crv: "P-256", x: b64(x), y: "", wantErr: ErrCoordinate},
		{name: "only padding", crv: "P-256", x: "====", y: b64(y), wantErr: ErrCoordinate},
		{name: "33-byte x", crv: "P-256", x: b64(append([]byte{0}, x...)), y: b64(y), wantErr: ErrCoordinate},
		{name: "long y", crv: "P-256", x: b64(x), y: b64(append(y, 1)), wantErr: ErrCoordinate},
		{name: "bad base64", crv: "P-256", x: "!!" + b64(x)[2:], y: b64(y), wantErr: ErrCoordinate},
		{name: "std alphabet", crv: "P-256", x: "+/" + b64(x)[2:], y: b64(y), wantErr: ErrCoordinate},
		{name: "inner padding", crv: "P-256", x: b64(x[:3]) + "=" + b64(x[3:]), y: b64(y), wantErr: ErrCoordinate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub, err := PublicKey(tt.crv, tt.x, tt.y)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || pub != nil {
					t.Fatalf("PublicKey(%q, %q, %q) = %v, %v; want %v", tt.crv, tt.x, tt.y, pub, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PublicKey(%q, %q, %q) = %v", tt.crv, tt.x, tt.y, err)
			}
			b, _ := pub.Bytes()
			if string(b[1:1+Size]) != string(tt.wantX) {
				t.Errorf("PublicKey x = %x, want %x", b[1:1+Size], tt.wantX)
			}
		})
	}
}

func FuzzPublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := k.PublicKey.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	f.Add("P-256", b64(b[1:33]), b64(b[33:]))
	f.Add("P-256", b64(b[2:33]), b64(b[33:]))
	f.Add("P-256", "AA==", "")
	f.Fuzz(func(t *testing.T, crv, x, y string) {
		pub, err := PublicKey(crv, x, y)
		if err != nil {
			return
		}
		// Whatever is accepted is a point on P-256 that round-trips.
		enc, err := pub.Bytes()
		if err != nil {
			t.Fatalf("accepted key does not encode: %v", err)
		}
		if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), enc); err != nil {
			t.Fatalf("accepted key is not on P-256: %v", err)
		}
	})
}
