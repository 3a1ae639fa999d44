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
// token (and so which user) a public token came from. For browsers it serves a drop-in for Plaid's link-initialize.js
// (LinkScriptPath: window.Plaid.create with open, exit, submit and destroy,
// Plaid's callbacks, metadata and event names) and the Link UI it opens in
// an iframe, so react-plaid-link runs unmodified offline (linkui.go).
//
// Deviations from real Plaid, on purpose:
//   - /sandbox/item/fire_webhook also fires the ITEM codes PENDING_EXPIRATION,
//     PENDING_DISCONNECT, USER_PERMISSION_REVOKED and LOGIN_REPAIRED, so every
//     event Safeclose handles can be produced through the public API.
//   - SYNC_UPDATES_AVAILABLE is fired on request even before the item's
//     first /transactions/sync (Plaid sends it only after one).
//   - Link is the emulator's own JavaScript and UI (or /__emu/link/complete),
//     not Plaid's; it has no OAuth institutions, MFA or Layer steps.
//   - Institutions are any "ins_<digits>"; username user_good succeeds
//     (/__emu/link/complete checks no password); in the Link UI the password
//     is checked too: pass_good, or error_<CODE> for Plaid's sandbox error
//     credentials.
//
// It is a separate server: it imports nothing of the proxy.
package plaidsim
