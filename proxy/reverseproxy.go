package proxy

import (
	"bytes"
	"fmt"
	"net"
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

var identityPrefix = []byte("x-safeclose-")

// hopByHop are the RFC 9110 §7.6.1 connection-specific headers a proxy must
// not forward (fasthttp manages Connection and Transfer-Encoding itself).
var hopByHop = []string{
	"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Upgrade",
}

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
	stripRequest(h)
	h.Set(HeaderUser, id.Subject)
	h.Set(HeaderTenant, tn.Name)
	for _, c := range id.Claims {
		h.Set(HeaderClaimPrefix+c.Name, c.Value)
	}
	// X-Forwarded-*: we are the edge, so we replace rather than append.
	var ipBuf [64]byte
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		h.SetBytesV("X-Forwarded-For", a.AddrPort().Addr().Unmap().AppendTo(ipBuf[:0]))
	} else {
		h.Del("X-Forwarded-For")
	}
	h.SetBytesV("X-Forwarded-Host", ctx.Host())
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	resp := &ctx.Response
	if err := tn.upstream.Do(req, resp); err != nil {
		resp.Reset()
		return fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	stripHopByHopResp(&resp.Header)
	return nil
}

// isHopByHop reports whether a header name is one of hopByHop, without
// allocating.
func isHopByHop(k []byte) bool {
	for _, h := range hopByHop {
		if len(k) == len(h) && bytes.EqualFold(k, []byte(h)) {
			return true
		}
	}
	return false
}

func hasIdentityPrefix(k []byte) bool {
	return len(k) >= len(identityPrefix) && bytes.EqualFold(k[:len(identityPrefix)], identityPrefix)
}

// stripRequest removes, in one pass over the headers, client copies of the
// identity headers, the hop-by-hop headers and the headers the Connection
// header names. A request that has none of them costs one scan and no
// allocation.
func stripRequest(h *fasthttp.RequestHeader) {
	var conn []byte
	if c := h.Peek(fasthttp.HeaderConnection); len(c) > 0 && !bytes.EqualFold(c, []byte("keep-alive")) && !bytes.EqualFold(c, []byte("close")) {
		conn = c
	}
	var del [][]byte
	for k := range h.All() {
		if hasIdentityPrefix(k) || isHopByHop(k) || (conn != nil && namedIn(conn, k)) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
}

// namedIn reports whether name is one of the comma-separated tokens of a
// Connection header (other than close and keep-alive).
func namedIn(conn, name []byte) bool {
	for len(conn) > 0 {
		var f []byte
		f, conn, _ = bytes.Cut(conn, []byte(","))
		f = bytes.TrimSpace(f)
		if len(f) > 0 && bytes.EqualFold(f, name) && !bytes.EqualFold(f, []byte("close")) && !bytes.EqualFold(f, []byte("keep-alive")) {
			return true
		}
	}
	return false
}

func stripHopByHopResp(h *fasthttp.ResponseHeader) {
	var del [][]byte
	for k := range h.All() {
		if isHopByHop(k) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
}
