package proxy

import (
	"time"

	"github.com/safeclose/safeclose/proxy/internal/stdwebhooks"
	"github.com/safeclose/safeclose/proxy/internal/webhook"
)

// ParseSigningSecret decodes a Standard Webhooks secret ("whsec_" + base64)
// for a forwarding Destination.
func ParseSigningSecret(s string) ([]byte, error) { return stdwebhooks.ParseSecret(s) }

// VerifyWebhookOffline checks a Plaid webhook against one JWK (a bare JWK or
// Plaid's {"key":{…}} answer) as of at, with the same steps as the receiver.
// On failure step names the first step that failed.
func VerifyWebhookOffline(header string, body, jwk []byte, at time.Time) (step string, err error) {
	k, err := webhook.ParseKeyJSON(jwk)
	if err != nil {
		return "key", err
	}
	if _, err := webhook.VerifyOffline(header, body, k, at); err != nil {
		if ve, ok := err.(*webhook.VerifyError); ok {
			return ve.Step.String(), err
		}
		return "unknown", err
	}
	return "", nil
}
