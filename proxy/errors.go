package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/store"
)

// Errors the handlers return; writeError maps them to statuses.
var (
	ErrUnauthenticated = errors.New("proxy: unauthenticated")
	ErrAuthUnavailable = errors.New("proxy: authenticator unavailable")
	ErrUnknownHost     = errors.New("proxy: unknown host")
	ErrNotFound        = errors.New("proxy: not found")
	ErrMethod          = errors.New("proxy: method not allowed")
	// ErrCrossOrigin: a browser sent a state-changing request to one of
	// Safeclose's own routes from another origin (origin.go).
	ErrCrossOrigin     = errors.New("proxy: cross-origin request refused")
	ErrTooLarge        = errors.New("proxy: body too large")
	ErrHeadersTooLarge = errors.New("proxy: request headers too large")
	// ErrPlaidBudget: the caller's Plaid calls this minute are spent
	// (plaid_budget.go).
	ErrPlaidBudget = errors.New("proxy: too many Plaid calls for this user")
	ErrPlaidDown   = errors.New("proxy: plaid unavailable")
	ErrUpstream    = errors.New("proxy: upstream unavailable")
	ErrNoUpstream  = errors.New("proxy: no upstream configured")
	// Issue 13: what passes through the reverse proxy.
	ErrUpstreamTimeout  = errors.New("proxy: upstream response timed out")
	ErrUpstreamTooLarge = errors.New("proxy: upstream response too large")
	ErrWebSocketsFull   = errors.New("proxy: websocket limit reached")
	ErrStoreDown        = errors.New("proxy: store unavailable")
	ErrKeyUnavailable   = errors.New("proxy: webhook verification key unavailable")
	// ErrWebhookSource: a webhook from an address outside
	// webhooks.source_ips.
	ErrWebhookSource = errors.New("proxy: webhook from an address not in webhooks.source_ips")
	// ErrLinkSession: the public token did not come from a Link session the
	// caller started (Issue 9.6).
	ErrLinkSession = errors.New("proxy: public token is not from the caller's link session")
	// ErrTenantUnavailable: the tenant's config could not be built (issue 9.15).
	ErrTenantUnavailable = errors.New("proxy: tenant unavailable")
)

// badRequestError is invalid client input; its message is safe to show.
type badRequestError struct{ code, msg string }

func (e *badRequestError) Error() string { return "proxy: bad request: " + e.code + ": " + e.msg }

func badRequest(code, format string, a ...any) error {
	return &badRequestError{code: code, msg: fmt.Sprintf(format, a...)}
}

// conflictError is a request that contradicts stored state; safe to show.
type conflictError struct {
	code, msg string
	itemID    string
}

func (e *conflictError) Error() string { return "proxy: conflict: " + e.code }

// DenyError is a plugin's explicit denial with its chosen status (401/403/429…).
type DenyError struct{ Status int }

func (e *DenyError) Error() string { return fmt.Sprintf("proxy: denied with status %d", e.Status) }

// PlaidError is an error answered by Plaid (its error object).
type PlaidError struct {
	HTTPStatus int
	Type, Code string
	RequestID  string
	Message    string // Plaid's developer message; logged, never shown
}

func (e *PlaidError) Error() string {
	return fmt.Sprintf("plaid: %d %s/%s (request_id %s)", e.HTTPStatus, e.Type, e.Code, e.RequestID)
}

// WebhookRejected is a webhook that failed verification.
type WebhookRejected struct {
	Status int // 400 malformed, 401 bad signature or unknown key, 503 a genuine signature with a stale iat (our clock)
	Step   string
	Err    error
}

func (e *WebhookRejected) Error() string {
	return "proxy: webhook rejected at " + e.Step + ": " + e.Err.Error()
}
func (e *WebhookRejected) Unwrap() error { return e.Err }

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	ItemID  string `json:"item_id,omitempty"`
}

func ed(code, msg string) errorDetail { return errorDetail{Code: code, Message: msg} }

// classify is the one place that turns an error into (status, code, message).
// Messages are fixed strings or client-safe text: never internal error text.
func classify(err error) (int, errorDetail) {
	var br *badRequestError
	var ce *conflictError
	var de *DenyError
	var pe *PlaidError
	var wr *WebhookRejected
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest, errorDetail{Code: br.code, Message: br.msg}
	case errors.As(err, &ce):
		return http.StatusConflict, errorDetail{Code: ce.code, Message: ce.msg, ItemID: ce.itemID}
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized, ed("unauthenticated", "a valid session is required")
	case errors.As(err, &de):
		st := de.Status
		if st < 400 || st > 499 {
			st = http.StatusForbidden
		}
		return st, ed("denied", "request denied")
	case errors.Is(err, ErrAuthUnavailable):
		return http.StatusServiceUnavailable, ed("auth_unavailable", "authentication is temporarily unavailable")
	case errors.Is(err, ErrTenantUnavailable):
		return http.StatusServiceUnavailable, ed("tenant_unavailable", "this service is temporarily unavailable")
	case errors.Is(err, ErrUnknownHost):
		return http.StatusNotFound, ed("unknown_host", "no tenant serves this host")
	case errors.Is(err, ErrLinkSession):
		return http.StatusForbidden, ed("link_session_mismatch", "this public_token did not come from a Link session started by this user; get a link_token from /api/plaid/link-token and run Link again")
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, ed("not_found", "not found")
	case errors.Is(err, ErrWebhookSource):
		return http.StatusForbidden, ed("webhook_source_refused", "webhooks are taken from the configured sender addresses only")
	case errors.Is(err, ErrCrossOrigin):
		return http.StatusForbidden, ed("cross_origin", "this route takes requests from the app's own origin only")
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed, ed("method_not_allowed", "method not allowed")
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, ed("body_too_large", "request body too large")
	case errors.Is(err, ErrPlaidBudget):
		return http.StatusTooManyRequests, ed("rate_limited", "too many Plaid requests for this user; retry shortly")
	case errors.Is(err, ErrHeadersTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge, ed("headers_too_large", "the request line and headers are larger than this server accepts (limits.max_header_bytes)")
	case errors.As(err, &wr):
		return wr.Status, ed("webhook_rejected", "webhook verification failed: "+wr.Step)
	case errors.As(err, &pe):
		return classifyPlaid(pe)
	case errors.Is(err, ErrPlaidDown):
		return http.StatusBadGateway, ed("plaid_unavailable", "Plaid could not be reached; try again")
	case errors.Is(err, ErrNoUpstream):
		return http.StatusNotFound, ed("not_found", "no such route")
	case errors.Is(err, ErrUpstreamTimeout):
		return http.StatusGatewayTimeout, ed("upstream_timeout", "the upstream application did not answer in time")
	case errors.Is(err, ErrUpstreamTooLarge):
		return http.StatusBadGateway, ed("upstream_response_too_large", "the upstream application's response exceeds the size limit")
	case errors.Is(err, ErrWebSocketsFull):
		return http.StatusServiceUnavailable, ed("websockets_full", "too many open WebSocket connections; try again later")
	case errors.Is(err, ErrUpstream):
		return http.StatusBadGateway, ed("upstream_unavailable", "the upstream application could not be reached")
	case errors.Is(err, ErrKeyUnavailable):
		return http.StatusServiceUnavailable, ed("key_unavailable", "the webhook verification key could not be fetched; retry later")
	case errors.Is(err, store.ErrCorrupt): // Issue 9.11: never served; logged by the store with the item id
		return http.StatusInternalServerError, ed("store_corrupt", "a stored record failed its integrity check")
	case errors.Is(err, store.ErrNoKey), errors.Is(err, store.ErrKeyMismatch): // records cannot be verified without the key
		return http.StatusServiceUnavailable, ed("sealing_key_unavailable", "the sealing key is missing or wrong; the administrator must fix the keyring")
	case errors.Is(err, store.ErrUnavailable): // Issue 9.12: disk full; 503 so clients and Plaid retry
		return http.StatusServiceUnavailable, ed("store_unavailable", "storage is temporarily unavailable; try again")
	case errors.Is(err, ErrStoreDown), errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable, ed("store_unavailable", "storage is temporarily unavailable; try again")
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, ed("timeout", "the request timed out")
	}
	return http.StatusInternalServerError, ed("internal", "internal error")
}

// classifyPlaid maps Plaid's answer to ours: the client's mistakes are 400,
// Plaid's own trouble is 502.
func classifyPlaid(pe *PlaidError) (int, errorDetail) {
	switch pe.Code {
	case "INVALID_PUBLIC_TOKEN":
		return http.StatusBadRequest, ed("invalid_public_token", "the public_token is invalid, expired or already used")
	case "INVALID_LINK_TOKEN":
		return http.StatusBadRequest, ed("invalid_link_token", "the link token is invalid or expired")
	case "ITEM_LOGIN_REQUIRED":
		return http.StatusConflict, ed("item_login_required", "the item needs the user to log in again (update mode)")
	case "INVALID_ACCESS_TOKEN":
		return http.StatusConflict, ed("item_invalid", "the item is no longer valid at Plaid")
	case "RATE_LIMIT_EXCEEDED":
		return http.StatusTooManyRequests, ed("plaid_rate_limited", "Plaid rate limit reached; try again later")
	}
	if pe.Type == "RATE_LIMIT_EXCEEDED" {
		return http.StatusTooManyRequests, ed("plaid_rate_limited", "Plaid rate limit reached; try again later")
	}
	return http.StatusBadGateway, ed("plaid_error", "Plaid refused the request ("+pe.Code+")")
}

// writeError writes the JSON error body for err.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	status, d := classify(err)
	writeJSON(ctx, status, errorBody{Error: d})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	jsonHeader(ctx, status)
	ctx.SetBody(b)
}

// jsonHeader sets the status and headers of every JSON answer; the caller
// sets the body.
func jsonHeader(ctx *fasthttp.RequestCtx, status int) {
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	// Never sniffed into anything else: an error body may echo a
	// client's field name, and these answers stand on the app's origin.
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetStatusCode(status)
}
