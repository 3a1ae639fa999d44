// Package plaidsim is a local emulator of Plaid's sandbox for the calls
// Safeclose makes, faithful enough that the real plaid-go v29 client cannot
// tell it from https://sandbox.plaid.com: JSON POST endpoints with
// credentials in headers or body, Plaid's error object and statuses,
// request_id in every body, RFC 3339 times, and webhooks signed exactly as
// Plaid signs them (ES256 JWT in Plaid-Verification with kid, iat and
// request_body_sha256 over a 2-space-indented, key-sorted body), with key
// rotation and Plaid's retry schedule.
//
// Emulator-only endpoints live under /__emu/: a stand-in for the Link UI
// (POST /__emu/link/complete and the HTML page GET /__emu/link?token=…), key
// rotation, the delivery log, and a webhook sender with faults for negative
// tests (duplicate, wrong key, wrong alg, stale iat, tampered body, unknown
// kid). /link/token/get reports the Link sessions completed with a link
// token (link_sessions[].results.item_add_results[].public_token) for six
// hours after each session, as Plaid does, so an app can tell which link
// token (and so which user) a public token came from.
//
// Deviations from real Plaid, on purpose:
//   - /sandbox/item/fire_webhook also fires the ITEM codes PENDING_EXPIRATION,
//     PENDING_DISCONNECT, USER_PERMISSION_REVOKED and LOGIN_REPAIRED, so every
//     event Safeclose handles can be produced through the public API.
//   - SYNC_UPDATES_AVAILABLE is fired on request even before the item's
//     first /transactions/sync (Plaid sends it only after one).
//   - Link is completed by /__emu/link/complete instead of Plaid's JavaScript.
//   - Institutions are any "ins_<digits>"; credentials user_good/pass_good
//     succeed, anything else fails with INVALID_CREDENTIALS.
//
// It is a separate server: it imports nothing of the proxy.
package plaidsim
