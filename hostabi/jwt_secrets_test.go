package hostabi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// signHS256Kid is signHS256 with a kid in the header.
func signHS256Kid(key []byte, kid string, claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + kid + `"}`))
	c, _ := json.Marshal(claims)
	s := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// A token's kid names the HMAC secret that verifies it, so a plugin holding
// a second secret for something else (a partner's key for
// hmac_sha256_verify) let whoever holds it sign sessions for any user (the
// browser-side pass). jwt.secrets names the ones that may; the rest verify
// no token, [] names none, a name the plugin does not have is refused at
// load, and so is a plugin with several secrets that names none.
func TestJWTSecretsNameTheSessionKeys(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	session, partner := []byte("tenant-jwt-secret-0123456789abcd"), []byte("partner-webhook-secret-012345678")
	exp := time.Now().Add(time.Hour).Unix()
	opts := func(names ...string) hostabi.PluginOptions {
		return hostabi.PluginOptions{
			Caps:    hostabi.Capabilities{Config: true, Crypto: true, Log: true},
			Secrets: map[string][]byte{"main": session, "partner": partner},
			JWT:     hostabi.JWTOptions{HMACSecrets: names},
		}
	}
	forged := signHS256Kid(partner, "partner", map[string]any{"sub": "alice", "exp": exp})
	genuine := signHS256Kid(session, "main", map[string]any{"sub": "alice", "exp": exp})

	unnamed := opts()
	unnamed.Tenant, unnamed.Name, unnamed.Wasm = "t1", "jwtauth", wasm(t, "jwtauth")
	if _, err := e.Load(context.Background(), unnamed); err == nil || !strings.Contains(err.Error(), "jwt.secrets is required with several secrets") {
		t.Fatalf("Load with two secrets and no jwt.secrets = %v; want refused", err)
	}
	none := load(t, e, "jwtauth", opts([]string{}...))
	for _, tok := range []string{forged, genuine} { // [] names none: no HS256 token verifies
		if d, err := none.Authenticate(context.Background(), bytesReq(hdr("Authorization", "Bearer "+tok))); err != nil || d.Allow {
			t.Fatalf("with jwt.secrets [], a token = %+v, %v; want denied", d, err)
		}
	}
	named := load(t, e, "jwtauth", opts("main"))
	if d, err := named.Authenticate(context.Background(), bytesReq(hdr("Authorization", "Bearer "+forged))); err != nil || d.Allow {
		t.Fatalf("with jwt.secrets [main], a partner-signed token = %+v, %v; want denied", d, err)
	}
	if d, err := named.Authenticate(context.Background(), bytesReq(hdr("Authorization", "Bearer "+genuine))); err != nil || !d.Allow || d.Subject != "alice" {
		t.Fatalf("with jwt.secrets [main], the session key's token = %+v, %v; want alice", d, err)
	}
	o := opts("nope")
	o.Tenant, o.Name, o.Wasm = "t1", "jwtauth", wasm(t, "jwtauth")
	if _, err := e.Load(context.Background(), o); err == nil || !strings.Contains(err.Error(), `jwt.secrets: "nope"`) {
		t.Fatalf("Load with jwt.secrets naming no secret = %v; want refused", err)
	}
}
