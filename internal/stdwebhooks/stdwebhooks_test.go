package stdwebhooks

import (
	"errors"
	"testing"
	"time"
)

// The example from the Standard Webhooks specification.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = int64(1614265330)
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSpecVector(t *testing.T) {
	t.Parallel()
	key, err := ParseSecret(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, specID, time.Unix(specTS, 0), []byte(specBody)); got != specSig {
		t.Errorf("Sign = %s, want %s", got, specSig)
	}
	now := time.Unix(specTS+10, 0)
	if err := Verify(key, specID, "1614265330", "v1,bogus "+specSig, []byte(specBody), now, 5*time.Minute); err != nil {
		t.Errorf("Verify(spec) = %v", err)
	}
	tests := []struct {
		name, id, ts, sig, body string
		want                    error
	}{
		{"tampered body", specID, "1614265330", specSig, `{"test": 1}`, ErrNoSignature},
		{"other id", "msg_x", "1614265330", specSig, specBody, ErrNoSignature},
		{"stale", specID, "1614260000", specSig, specBody, ErrTimestamp},
		{"bad ts", specID, "x", specSig, specBody, ErrTimestamp},
		{"v2 only", specID, "1614265330", "v2," + specSig[3:], specBody, ErrNoSignature},
	}
	for _, tt := range tests {
		if err := Verify(key, tt.id, tt.ts, tt.sig, []byte(tt.body), now, 5*time.Minute); !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ParseSecret("whsec_short"); err == nil {
		t.Errorf("short secret accepted")
	}
}
