package proxy

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/hostabi"
)

// Options configure a Server. Zero values are documented per field.
type Options struct {
	Tenants []Tenant     // at least one
	Store   Store        // required (*store.DB or *pg.DB); owned by the caller (Close it after Shutdown)
	Logger  *slog.Logger // nil means discard

	// MaxBodyBytes caps a request body; zero means 64 KiB. Proxied bodies
	// stream to the upstream counted against it; bodies read whole (Plaid
	// routes, a body-reading auth plugin's tenant) are capped at
	// min(MaxBodyBytes, 16 MiB). See stream_request.go.
	MaxBodyBytes int
	ReadTimeout  time.Duration // zero means 10s
	WriteTimeout time.Duration // zero means 30s
	IdleTimeout  time.Duration // zero means 60s; fasthttp's Shutdown waits on idle keep-alives
	PlaidTimeout time.Duration // per Plaid call; zero means 15s
	// MaxConns bounds the client connections open at once across the
	// public listeners; zero means 10000. MaxConnsPerIP bounds them per
	// client address; zero means no bound (behind a load balancer every
	// client has its address). See connlimit.go.
	MaxConns      int
	MaxConnsPerIP int
	// MaxHeaderBytes bounds a request's line and headers (431 beyond);
	// zero means 16 KiB. Each open connection holds a read buffer of this
	// size.
	MaxHeaderBytes int
	// PlaidCallsPerUser bounds the Plaid calls one user's requests make a
	// minute (a bucket of that size, refilled evenly; per replica); zero
	// means 60. Over it, link-token and exchange answer 429 rate_limited
	// and status shows the stored state. See plaid_budget.go.
	PlaidCallsPerUser int

	Webhooks WebhookOptions

	// AccessLog receives one JSON line per request (see accesslog.go); nil
	// means no access log. Lines are written by one goroutine, a batch of
	// whole lines per Write call, never while a request waits.
	AccessLog io.Writer
	// AccessLogBuffer bounds the access log bytes waiting to be written;
	// zero means DefaultAccessLogBuffer (1 MiB). When it is full, lines are
	// dropped and counted in safeclose_access_log_dropped_total.
	AccessLogBuffer int
	// TrustRequestID keeps a well-formed incoming X-Request-Id; false means
	// every request gets a new one (Safeclose is the edge).
	TrustRequestID bool
	// AdminPprof serves net/http/pprof under /debug/pprof/ on the admin
	// handler, for profiling under load; false (the default) serves
	// nothing there. Profiles show code paths and timings, never request
	// data, but the admin listener must stay private.
	AdminPprof bool
	// What passes through the reverse proxy (issue 13); see RATIONALE.md
	// "Why stream responses?".
	MaxResponseBytes     int64         // per proxied response, counted as it streams; zero means 64 MiB
	MaxWebSockets        int           // open WebSocket tunnels per tenant; zero means 1000
	WebSocketIdleTimeout time.Duration // a tunnel with no traffic either way is closed; zero means 60s

	// HTTPClient is used by plaid-go and for forwarding events; nil means a
	// client with PlaidTimeout. New uses a copy that never follows a
	// redirect.
	HTTPClient *http.Client
	// Registry receives the metrics; nil means a private registry.
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// exchangeFault, when set (tests only), is called at each stage of an
	// exchange (faultExchanged, faultSaved); an error it returns is treated
	// as that stage's outcome, so tests can simulate a lost answer or a
	// crash (errors other than Plaid's abort the request as a crash would).
	exchangeFault func(stage string) error
}

// WebhookOptions tune the durable webhook pipeline.
type WebhookOptions struct {
	MaxBodyBytes int           // zero means 64 KiB
	Workers      int           // zero means 8; negative means no workers (intake only)
	MaxAttempts  int           // zero means 8, then dead-letter
	Lease        time.Duration // zero means 30s
	Backoff      time.Duration // first retry delay, doubled per attempt; zero means 1s
	MaxBackoff   time.Duration // zero means 5m
	Poll         time.Duration // idle poll interval; zero means 200ms
	MaxAge       time.Duration // webhook JWT freshness; zero means 5m

	// TenantWorkers caps how many workers one tenant's entries may hold at
	// once, so a slow tenant cannot delay another; zero means half of
	// Workers, at least 1. Each entry's lease is renewed every third of
	// Lease while it is worked on.
	TenantWorkers int

	// IntakeFirstAt is how many verified webhooks waiting for the store at
	// once make a burst, when the process is also short of CPU: while one
	// lasts, workers rest after each entry (paceForIntake), so the burst is
	// answered at the machine's pace and forwarded right after it. Zero
	// means 8; negative turns pacing off.
	IntakeFirstAt int

	// SourceIPs, when not empty, are the only client addresses webhooks
	// are taken from (Plaid's published addresses); others are answered
	// 403 webhook_source_refused before verification, so a forger there
	// cannot spend the tenant's key fetches (webhook.Verifier).
	SourceIPs []netip.Prefix

	// shortOfCPU (tests) stands for schedWatch: whether the process is
	// short of CPU.
	shortOfCPU func() bool
}

// Tenant is one workspace.
type Tenant struct {
	Name          string
	Hosts         []string // matched case-insensitively, port ignored
	Upstream      string   // http(s)://host:port; empty means no reverse proxy
	UpstreamConns int      // per target; zero means 512
	// Upstreams are more targets, balanced round-robin with Upstream (when
	// set) as the first. A target that fails to connect is ejected for a
	// backoff (1s, doubled per failure, at most 30s).
	Upstreams []string
	// UpstreamCAs verifies https upstreams; nil means the system roots.
	UpstreamCAs *x509.CertPool
	// UpstreamTimeouts bound each call to an upstream.
	UpstreamTimeouts UpstreamTimeouts
	Plaid            PlaidOptions
	Auth             Authenticator // required
	// EventPlugins post-process verified webhooks in order. The server does not
	// own them: the caller closes them after Shutdown or a Reload.
	EventPlugins []*hostabi.Plugin
	Forward      []Destination

	// Unavailable, when set, means the tenant could not be built (its
	// plugin was refused, a secret could not be read…). It still owns its
	// Hosts, and every request for them fails closed with 503
	// tenant_unavailable; /readyz reports the reason. Nothing else of the
	// tenant is used, and Auth may be nil.
	Unavailable *Unavailability
	// ReloadRefused, when set, means the last reload could not build this
	// tenant's new config, so it keeps serving its previous one; /readyz
	// reports it. The tenant is otherwise healthy.
	ReloadRefused *Unavailability
}

// Unavailability says why a tenant's config could not be built. Both fields
// are safe to show on the admin listener: no secrets, no internal text.
type Unavailability struct {
	// Reason is a fixed class: plugin_missing, plugin_sha256_mismatch,
	// plugin_refused, secret_unavailable or config_invalid.
	Reason string
	// Field is the config path at fault, e.g. "tenants[1].auth.plugin".
	Field string
}

func (u *Unavailability) String() string { return u.Reason + " (" + u.Field + ")" }

// UpstreamTimeouts bound a tenant's upstream calls. The zero values keep
// the behaviour of the single hard-coded upstream before issue 13.
type UpstreamTimeouts struct {
	Connect time.Duration // TCP (and TLS) connect; zero means 3s
	// ResponseHeader is the longest wait for the response headers, and the
	// longest silence between two reads of a response body (an SSE stream
	// must send something, a comment line will do, at least this often).
	// Zero means 30s.
	ResponseHeader time.Duration
	Idle           time.Duration // an unused pooled connection is closed after; zero means 30s
}

// PlaidOptions is a tenant's Plaid account.
type PlaidOptions struct {
	BaseURL      string // https://sandbox.plaid.com, https://production.plaid.com or the emulator
	ClientID     string
	Secret       string // never logged
	ClientName   string
	Products     []string
	CountryCodes []string
	Language     string
	WebhookURL   string
	RedirectURI  string
}

// Destination is a forwarding target for webhook events.
type Destination struct {
	Name   string
	URL    string
	Secret []byte // Standard Webhooks signing key
}

// Identity is who a request is from.
type Identity struct {
	Subject string
	Claims  []hostabi.Claim
}

// Authenticator decides who a request's user is. It must not retain ctx.
// It returns ErrUnauthenticated (401), a *DenyError, or ErrAuthUnavailable
// (503) when it cannot decide: the request then fails closed.
type Authenticator interface {
	Authenticate(base context.Context, ctx *fasthttp.RequestCtx) (Identity, error)
}
