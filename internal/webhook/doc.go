// Package webhook verifies Plaid webhook signatures exactly as Plaid
// documents: the Plaid-Verification compact JWT must have alg ES256 (checked
// before any key is touched), a kid whose key comes from Plaid's
// /webhook_verification_key/get (cached by kid and re-fetched every 2
// minutes; expired_at checked on every use; unknown kids fetched once,
// single-flight, rate-limited per Verifier and negatively cached with a
// bound; a throttled or failed lookup is Unavailable, never a rejection), a valid
// signature, an iat no older than 5 minutes (and not in the future beyond a
// small skew), and request_body_sha256 equal to the SHA-256 of the raw body,
// compared in constant time.
//
// It is the only package that imports jwx, so moving to jwx v3 is one
// package's change. From the module it imports only internal/jwkp256, the
// one P-256 JWK parser (shared with hostabi's jwt_verify).
package webhook
