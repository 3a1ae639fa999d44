// Package stdwebhooks signs and verifies webhooks with the Standard Webhooks
// scheme (https://www.standardwebhooks.com): headers webhook-id,
// webhook-timestamp (Unix seconds) and webhook-signature, a space-separated
// list of "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>". Secrets are
// written "whsec_" + base64. It imports nothing from the module.
package stdwebhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors from Verify.
var (
	ErrNoSignature = errors.New("stdwebhooks: no matching v1 signature")
	ErrTimestamp   = errors.New("stdwebhooks: timestamp missing or outside tolerance")
	ErrSecret      = errors.New("stdwebhooks: secret must be whsec_ + base64 (at least 24 bytes)")
)

// ParseSecret decodes "whsec_<base64>" (the prefix is optional).
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "whsec_")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 24 {
		return nil, ErrSecret
	}
	return b, nil
}

func mac(secret []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the webhook-signature header value for body.
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, strconv.FormatInt(ts.Unix(), 10), body))
}

// Verify checks the headers against body: the timestamp must be within
// tolerance of now and one v1 signature must match (compared in constant time).
func Verify(secret []byte, id, ts, sigHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	want := mac(secret, id, ts, body)
	for _, s := range strings.Fields(sigHeader) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoSignature
}
