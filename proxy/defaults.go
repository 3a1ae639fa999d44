package proxy

import "time"

// The defaults New applies to zero Options fields: their one home.
// configs.Default repeats them for the config file (configs imports nothing
// from the module), and a test in cmd/safeclose asserts the two agree; see
// RATIONALE.md "Where defaults live".
const (
	DefaultMaxBodyBytes         = 64 << 10
	DefaultReadTimeout          = 10 * time.Second
	DefaultWriteTimeout         = 30 * time.Second
	DefaultIdleTimeout          = 60 * time.Second
	DefaultPlaidTimeout         = 15 * time.Second
	DefaultUpstreamConns        = 512 // per upstream target
	DefaultMaxResponseBytes     = 64 << 20
	DefaultMaxWebSockets        = 1000 // per tenant
	DefaultWebSocketIdleTimeout = 60 * time.Second
	DefaultMaxConns             = 10000 // client connections open at once, all public listeners
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultPlaidCallsPerUser    = 60 // a minute
)

// upstreamHeaderBytes bounds an upstream answer's status line and headers.
// fasthttp's default, 4 KiB, made an app's answer with a long
// Content-Security-Policy or a few cookies a 502; Envoy allows 60 KiB.
// The client's reader is pooled per request, not held per connection.
const upstreamHeaderBytes = 64 << 10

// The defaults New applies to zero WebhookOptions fields.
const (
	DefaultWebhookMaxBodyBytes = 64 << 10
	DefaultWebhookWorkers      = 8
	DefaultWebhookMaxAttempts  = 20 // with the backoffs: a destination may be down ~8 h before dead letters
	DefaultWebhookLease        = 30 * time.Second
	DefaultWebhookBackoff      = time.Second
	DefaultWebhookMaxBackoff   = time.Hour
	DefaultWebhookPoll         = 200 * time.Millisecond
	DefaultWebhookMaxAge       = 5 * time.Minute
	DefaultWebhookIntakeFirst  = 8 // verified webhooks waiting for the store: a burst
)
