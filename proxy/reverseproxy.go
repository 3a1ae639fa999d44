package proxy

import (
	"fmt"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// Identity headers: set by Safeclose only; any client copy is stripped.
const (
	HeaderUser        = "X-Safeclose-User"
	HeaderTenant      = "X-Safeclose-Tenant"
	HeaderClaimPrefix = "X-Safeclose-Claim-"
)

func newUpstream(t Tenant) (*fasthttp.HostClient, string, error) {
	u, err := url.Parse(t.Upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, "", fmt.Errorf("proxy: upstream %q is not an http(s) URL", t.Upstream)
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	conns := t.UpstreamConns
	if conns == 0 {
		conns = 512
	}
	return &fasthttp.HostClient{
		Addr:                          addr,
		Name:                          "safeclose",
		IsTLS:                         u.Scheme == "https",
		MaxConns:                      conns,
		ReadTimeout:                   30 * time.Second,
		WriteTimeout:                  30 * time.Second,
		MaxIdleConnDuration:           30 * time.Second,
		MaxConnWaitTimeout:            5 * time.Second,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}, u.Scheme, nil
}

// proxyRequest authenticates the request with the tenant's authenticator and
// forwards it to the tenant's upstream with identity headers set.
func (s *Server) proxyRequest(ctx *fasthttp.RequestCtx, tn *tenant) error {
	if tn.upstream == nil {
		return ErrNoUpstream
	}
	id, err := tn.Auth.Authenticate(s.base, ctx)
	if err != nil {
		return err
	}
	req := &ctx.Request
	h := &req.Header
	// sanitizeRequest (in handle) already removed client identity and
	// forwarding headers, name variants included.
	closeConn := h.ConnectionClose()
	stripHopByHop(h)
	h.Set(HeaderUser, id.Subject)
	h.Set(HeaderTenant, tn.Name)
	for _, c := range id.Claims {
		h.Set(HeaderClaimPrefix+c.Name, c.Value)
	}
	setForwarding(ctx, h)
	resp := &ctx.Response
	if err := tn.upstream.Do(req, resp); err != nil {
		resp.Reset()
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	stripHopByHopResp(&resp.Header)
	if closeConn {
		ctx.SetConnectionClose() // the client asked to close; honour it after the answer
	}
	return nil
}
