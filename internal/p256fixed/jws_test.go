package p256fixed

import (
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Once a Key exists, jwx's ES256 verification takes it, and every key
// type it took before still verifies as before (the rest of the process
// uses jwx's ES256 too).
func TestRegisterJWS(t *testing.T) {
	priv, k := newKey(t) // New registers the verifier (once)
	jk, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("a webhook's signing input")
	tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256, priv))
	if err != nil {
		t.Fatal(err)
	}
	other, ko := newKey(t)
	for _, c := range []struct {
		name string
		key  any
		ok   bool
	}{
		{"*Key", k, true},
		{"*ecdsa.PublicKey", &priv.PublicKey, true},
		{"ecdsa.PublicKey", priv.PublicKey, true},
		{"jwk.Key", jk, true},
		{"another *Key", ko, false},
		{"another *ecdsa.PublicKey", &other.PublicKey, false},
	} {
		got, err := jws.Verify(tok, jws.WithKey(jwa.ES256, c.key))
		if (err == nil) != c.ok || (c.ok && string(got) != string(payload)) {
			t.Errorf("%s: jws.Verify = %q, %v; want ok=%v", c.name, got, err, c.ok)
		}
	}
	// A signature of the wrong length is refused before any arithmetic.
	ver, _ := jws.NewVerifier(jwa.ES256)
	if err := ver.Verify(payload, make([]byte, 63), k); err == nil {
		t.Error("a 63-byte signature was accepted")
	}
}
