// Package proxy is Safeclose's edge: the fasthttp server, tenant routing by
// Host, session authentication (built-in API keys or a tenant's Wasm plugin),
// the three Plaid Link routes, the Plaid webhook receiver and its workers,
// the reverse proxy to each tenant's upstream, and the admin listener.
//
// Invariants:
//   - An access token never leaves this package's callers' process: it is not
//     in a response, a log line, an error message or a plugin's view.
//   - Exactly one function (writeError in errors.go) maps errors to HTTP
//     statuses; response bodies never contain internal error text.
//   - Identity headers (X-Safeclose-*) reaching an upstream were set by
//     Safeclose: client copies are stripped.
//   - A webhook is answered 200 only after it is durably stored.
//   - A WebSocket upgrade reaches an upstream only after authentication;
//     a proxied response never exceeds Options.MaxResponseBytes (streamed
//     ones are cut at it).
//
// proxy imports hostabi and store; nothing imports proxy. It must not know
// Badger keys or wazero details. jwx lives in internal/webhook only.
//
// proxy is importable only because the product's layout keeps it at the
// top level; it is not a stable API (RATIONALE.md, "Why the runtime packages
// are not under internal/").
package proxy
