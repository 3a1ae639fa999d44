package proxy

import (
	"errors"
	"io"

	"github.com/valyala/fasthttp"
)

// Identity headers: set by Safeclose only; any client copy is stripped.
const (
	HeaderUser        = "X-Safeclose-User"
	HeaderTenant      = "X-Safeclose-Tenant"
	HeaderClaimPrefix = "X-Safeclose-Claim-"
)

// proxyRequest authenticates the request with the tenant's authenticator and
// forwards it to the tenant's upstream with identity headers set. The
// response body streams to the client as the upstream writes it, counted
// against MaxResponseBytes; see RATIONALE.md "Why stream responses?".
func (s *Server) proxyRequest(ctx *fasthttp.RequestCtx, tn *tenant) error {
	if tn.upstream == nil {
		return ErrNoUpstream
	}
	if tn.bufferBody { // the auth plugin may read the body (stream_request.go)
		if err := s.bufferBody(ctx, s.bufferLimit()); err != nil {
			return err
		}
	}
	id, err := tn.Auth.Authenticate(s.base, ctx)
	if err != nil {
		return err
	}
	req := &ctx.Request
	h := &req.Header
	// sanitizeRequest (in handle) already removed client identity and
	// forwarding headers, name variants included.
	ws := isWebSocketUpgrade(h)
	closeConn := h.ConnectionClose()
	stripHopByHop(h)
	setIdentity(h, id, tn.Name)
	setForwarding(ctx, h)
	if ws {
		return s.proxyWebSocket(ctx, tn)
	}
	up := fasthttp.AcquireResponse()
	if err := s.sendUpstream(ctx, tn, up); err != nil {
		fasthttp.ReleaseResponse(up)
		return err
	}
	if err := s.relayResponse(ctx, up); err != nil {
		return err
	}
	if closeConn {
		ctx.SetConnectionClose() // the client asked to close; honour it after the answer
	}
	return nil
}

// setIdentity sets the identity headers: user, tenant and claims. The
// fixed keys go in by SetCanonical (Set would copy and normalise them each
// time).
func setIdentity(h *fasthttp.RequestHeader, id Identity, tenant string) {
	var vb [128]byte // SetCanonical copies the value: one buffer serves both
	h.SetCanonical(keyUser, append(vb[:0], id.Subject...))
	h.SetCanonical(keyTenant, append(vb[:0], tenant...))
	for _, c := range id.Claims {
		h.Set(HeaderClaimPrefix+c.Name, c.Value)
	}
}

// relayResponse moves the upstream's response into ctx: headers now, the
// body as a stream that the server writes (and flushes chunk by chunk)
// after the handler returns. It takes ownership of up.
func (s *Server) relayResponse(ctx *fasthttp.RequestCtx, up *fasthttp.Response) error {
	max := s.opts.MaxResponseBytes
	cl := up.Header.ContentLength()
	if int64(cl) > max {
		up.CloseBodyStream() //nolint:errcheck // a stream's connection is discarded; a small body was read whole
		fasthttp.ReleaseResponse(up)
		return ErrUpstreamTooLarge
	}
	resp := &ctx.Response
	up.Header.CopyTo(&resp.Header)
	stripHopByHopResp(&resp.Header)
	bs := up.BodyStream()
	if bs == nil {
		// No body (HEAD, 204, 304), or a small sized one the transport
		// read whole (upstream_transport.go): its buffer moves to resp
		// without a copy, and resp's empty one goes back to up.
		if len(up.Body()) > 0 {
			body := up.SwapBody(nil)
			up.SwapBody(resp.SwapBody(body))
		}
		fasthttp.ReleaseResponse(up)
		return nil
	}
	if cl < 0 {
		cl = -1 // chunked to the client, flushed per chunk
	}
	resp.SetBodyStream(&upstreamBody{
		up: up, r: bs, left: max, cr: s.clock.rec(ctx.Conn()), srv: s,
	}, cl)
	return nil
}

// errResponseCut ends a streamed response that grew past MaxResponseBytes.
var errResponseCut = errors.New("proxy: streamed upstream response exceeded max_response_bytes; cut")

// upstreamBody is a streamed upstream response body on its way to the
// client. It counts bytes against the cap and keeps the client
// connection's clock in step: WriteTimeout bounds the write of each piece,
// not the whole event stream, and not the wait for the upstream's next
// piece (the upstream connection's idle timeout bounds that).
type upstreamBody struct {
	up     *fasthttp.Response
	r      io.Reader
	left   int64
	cr     *connRec // the client connection's clock (connclock.go)
	srv    *Server
	closed bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		// A cut stream: the client sees the body end without the final
		// chunk and the connection close (RATIONALE.md).
		b.srv.log.Warn("upstream response cut at max_response_bytes", "max_response_bytes", b.srv.opts.MaxResponseBytes)
		return 0, errResponseCut
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // at most one byte past the cap
	}
	b.cr.set(phBusy) // waiting for the upstream (its own timeouts bound it)
	n, err := b.r.Read(p)
	b.cr.set(phWrite) // what came goes to the client next, under WriteTimeout
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, nil // what fits goes out; the next Read cuts
	}
	b.left -= int64(n)
	return n, err
}

// Close returns the upstream connection (or closes it, when the body was
// not read to its end).
func (b *upstreamBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.up.CloseBodyStream()
	fasthttp.ReleaseResponse(b.up)
	return err
}
