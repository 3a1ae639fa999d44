package hostabi_test

import (
	"context"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 12: jwtauth's request path (Bearer or cookie token, jwt_verify, sub
// as the subject), and apikey's (the token's SHA-256 in hex), allocate nothing in the guest when it uses the SDK's byte
// forms, so the guest heap does not grow per request and the guest's GC does
// not run inside requests. The string forms are measured beside them so the
// counter is known to see allocations.
func TestSDKBytesAllocsNothing(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	p := load(t, e, "sdkallocs", hostabi.PluginOptions{Caps: hostabi.Capabilities{Crypto: true},
		Secrets: map[string][]byte{"main": key}})
	tests := []struct {
		name string
		r    *req
	}{
		{"bearer", &req{headers: hdr("Authorization", "Bearer "+tok)}},
		{"cookie", &req{headers: hdr("Cookie", "a=b; session="+tok)}},
	}
	for _, tt := range tests {
		d, err := p.Authenticate(context.Background(), tt.r)
		if err != nil || !d.Allow || d.Subject != "alice" {
			t.Fatalf("%s: Authenticate = %+v, %v; want alice allowed", tt.name, d, err)
		}
		c := claims(d)
		t.Logf("%s: guest allocations in 100 requests: byte forms %s, string forms %s, apikey path %s", tt.name, c["bytes"], c["strings"], c["digest"])
		if c["bytes"] != "0" {
			t.Errorf("%s: 100 requests through the SDK's byte forms made %s guest allocations, want 0", tt.name, c["bytes"])
		}
		if c["digest"] != "0" {
			t.Errorf("%s: 100 requests through apikey's path (SHA256, hex, map) made %s guest allocations, want 0", tt.name, c["digest"])
		}
		if c["strings"] == "0" {
			t.Errorf("%s: the string forms made no guest allocations: the counter sees nothing", tt.name)
		}
	}
}
