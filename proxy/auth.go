package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/loglimit"
)

// APIKeys is the built-in authenticator: "Authorization: Bearer <key>" → user.
// Only SHA-256 digests of keys are held.
type APIKeys struct {
	users map[[32]byte]string
}

// NewAPIKeys builds the authenticator from hex SHA-256 digest → user.
func NewAPIKeys(digests map[string]string) (*APIKeys, error) {
	a := &APIKeys{users: make(map[[32]byte]string, len(digests))}
	for h, u := range digests {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proxy: api key digest %q is not 64 hex characters", h)
		}
		if u == "" {
			return nil, errors.New("proxy: api key with empty user")
		}
		a.users[[32]byte(b)] = u
	}
	return a, nil
}

var bearer = []byte("Bearer ")

// Authenticate implements Authenticator.
func (a *APIKeys) Authenticate(_ context.Context, ctx *fasthttp.RequestCtx) (Identity, error) {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if len(h) <= len(bearer) || !bytes.EqualFold(h[:len(bearer)], bearer) {
		return Identity{}, ErrUnauthenticated
	}
	u, ok := a.users[sha256.Sum256(bytes.TrimSpace(h[len(bearer):]))]
	if !ok {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Subject: u}, nil
}

// PluginAuth runs a tenant's Wasm auth plugin. A plugin that traps, times out
// or misbehaves fails closed with ErrAuthUnavailable (503); the details go to
// the log and metrics only.
type PluginAuth struct {
	Plugin *hostabi.Plugin
	Tenant string
	Logger *slog.Logger
	// OnFailure, when set, is told the failure reason (metrics).
	OnFailure func(reason string)

	logs loglimit.Limiter // one failure line a second; the next says how many were suppressed
}

// Authenticate implements Authenticator.
func (p *PluginAuth) Authenticate(base context.Context, ctx *fasthttp.RequestCtx) (Identity, error) {
	r := reqViewPool.Get().(*reqView)
	r.ctx = ctx
	d, err := p.Plugin.Authenticate(base, r)
	r.ctx = nil
	r.addr = r.addr[:0]
	reqViewPool.Put(r)
	if err != nil {
		reason := "error"
		var te *hostabi.TrapError
		switch {
		case errors.Is(err, hostabi.ErrTimeout):
			reason = "timeout"
		case errors.Is(err, hostabi.ErrPenalty):
			// Failed fast: the plugin failed too often in a row.
			reason = "penalty"
		case errors.Is(err, hostabi.ErrOverShare):
			// Failed fast: the plugin used more than its CPU share.
			reason = "cpu_share"
		case errors.As(err, &te):
			reason = "trap"
		}
		return Identity{}, p.fail(reason, err)
	}
	if !d.Allow && d.Status >= 500 {
		// The plugin says it cannot decide (bad config, a dependency down):
		// a plugin failure, not a denial.
		return Identity{}, p.fail("deny_5xx", fmt.Errorf("plugin denied with %d", d.Status))
	}
	if !d.Allow {
		if d.Status == 0 || d.Status == fasthttp.StatusUnauthorized {
			return Identity{}, ErrUnauthenticated
		}
		return Identity{}, &DenyError{Status: d.Status}
	}
	if d.Subject == "" {
		return Identity{}, fmt.Errorf("%w: plugin allowed without a subject", ErrAuthUnavailable)
	}
	return Identity{Subject: d.Subject, Claims: d.Claims}, nil
}

// fail counts and logs (throttled) a plugin failure and returns the error
// that fails the request closed with 503.
func (p *PluginAuth) fail(reason string, err error) error {
	if p.OnFailure != nil {
		p.OnFailure(reason)
	}
	if p.Logger != nil {
		if n, ok := p.logs.Allow(time.Now()); ok {
			p.Logger.Warn("auth plugin failed; failing closed", "tenant", p.Tenant, "reason", reason, "err", err, "suppressed_before", n)
		}
	}
	return fmt.Errorf("%w: %w", ErrAuthUnavailable, err)
}

// reqView is the plugin's read-only view of a fasthttp request. It is only
// valid during one Authenticate call.
type reqView struct {
	ctx  *fasthttp.RequestCtx
	addr []byte
}

var reqViewPool = sync.Pool{New: func() any { return &reqView{addr: make([]byte, 0, 48)} }}

func (r *reqView) Method() []byte { return r.ctx.Method() }
func (r *reqView) URI() []byte    { return r.ctx.RequestURI() }
func (r *reqView) Body() []byte   { return r.ctx.PostBody() }
func (r *reqView) VisitHeaders(fn func(name, value []byte)) {
	for k, v := range r.ctx.Request.Header.All() {
		fn(k, v)
	}
}

func (r *reqView) SourceAddr() []byte {
	if len(r.addr) == 0 {
		if a, ok := r.ctx.RemoteAddr().(*net.TCPAddr); ok {
			ap := a.AddrPort()
			// "ip:port", with brackets for IPv6 ("[::1]:443"), as
			// netip.ParseAddrPort expects.
			r.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(r.addr)
		} else {
			r.addr = append(r.addr, r.ctx.RemoteAddr().String()...)
		}
	}
	return r.addr
}
