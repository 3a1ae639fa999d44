package proxy

import (
	"errors"
	"io"
	"sync"

	"github.com/valyala/fasthttp"
)

// Request bodies (issue 13): the listener reads a request's headers and at
// most 8 KiB of its body before the handler runs (fasthttp's
// StreamRequestBody); the rest stays on the client connection. A proxied
// request's body is then read as the upstream connection takes it, counted
// against MaxBodyBytes. Bodies that something in Safeclose reads whole are
// buffered instead, at most maxBufferedBody: the Plaid routes, webhooks, and
// every body of a tenant whose auth plugin may read it. See RATIONALE.md
// "Why stream request bodies?".

// maxBufferedBody caps a request body held whole in memory, whatever
// MaxBodyBytes allows for streamed ones.
const maxBufferedBody = 16 << 20

// errBodyRead is a request body the client did not finish sending (it
// hung up, went silent past ReadTimeout, or broke the chunked framing).
var errBodyRead = badRequest("malformed_request", "the request body could not be read")

// errTrailer refuses a request whose trailer fields dropTrailers could not
// discard (none known: a guard against a fasthttp change).
var errTrailer = badRequest("malformed_request", "the request's trailer fields could not be discarded")

// errBodyOverCap aborts the upstream request of a streamed body that grew
// past MaxBodyBytes; it never reaches a client.
var errBodyOverCap = errors.New("proxy: streamed request body exceeded max_body_bytes")

// bodyReader is an Authenticator that may read the request body: the
// tenant's bodies are then buffered before it runs.
type bodyReader interface{ ReadsBody() bool }

// ReadsBody reports whether the plugin was granted the body capability.
func (p *PluginAuth) ReadsBody() bool { return p.Plugin != nil && p.Plugin.ReadsBody() }

// bufferLimit is the cap on a body read whole for a proxied request or a
// Plaid route.
func (s *Server) bufferLimit() int { return min(s.opts.MaxBodyBytes, maxBufferedBody) }

// reqBodyBufs holds the buffers streamed bodies are read whole into.
var reqBodyBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledReqBody bounds a buffer kept in reqBodyBufs.
const maxPooledReqBody = 64 << 10

// bufferBody reads a streamed request body whole into the request, so that
// PostBody (and a plugin's get_body) see it; nothing happens to a body that
// is not a stream. A body over limit is ErrTooLarge, one the client did not
// finish errBodyRead; both close the connection after the answer.
func (s *Server) bufferBody(ctx *fasthttp.RequestCtx, limit int) error {
	req := &ctx.Request
	bs := req.BodyStream()
	if bs == nil {
		return nil
	}
	cl := req.Header.ContentLength()
	if cl > limit {
		s.linger(ctx, bs, cl)
		ctx.SetConnectionClose()
		return ErrTooLarge
	}
	bp := reqBodyBufs.Get().(*[]byte)
	b, err := readBody(s.clock.rec(ctx.Conn()), bs, (*bp)[:0], limit)
	if err == nil && cl >= 0 && len(b) != cl {
		err = errBodyRead
	}
	if err == nil && !dropTrailers(&req.Header) {
		err = errTrailer
	}
	if err == nil {
		req.SetBody(b) // copies; the stream has been read to its end
	} else {
		ctx.SetConnectionClose()
	}
	if cap(b) <= maxPooledReqBody {
		*bp = b[:0]
		reqBodyBufs.Put(bp)
	}
	return err
}

// readBody appends r to b until EOF, at most limit bytes, each read of the
// client connection under ReadTimeout (cr's read phase; connclock.go).
func readBody(cr *connRec, r io.Reader, b []byte, limit int) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(max(2*cap(b), 4<<10), limit+1))
			copy(nb, b)
			b = nb
		}
		cr.set(phRead)
		n, err := r.Read(b[len(b):cap(b)])
		cr.set(phBusy)
		b = b[:len(b)+n]
		if len(b) > limit {
			return b, ErrTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, errBodyRead
		}
	}
}

// bodyStream is a client's request body on its way to the upstream. It
// counts bytes against MaxBodyBytes (a chunked body declares no size),
// reports a body that ends before its Content-Length as an error (so the
// upstream never gets a short body as a complete one), and puts each
// read of the client connection under ReadTimeout (its clock's read phase;
// one bound for the whole upload would cut a large one). Any error aborts
// the upstream request: fasthttp's client then closes that connection
// before the body's end (no final chunk, or fewer bytes than declared).
type bodyStream struct {
	r    io.Reader
	h    *fasthttp.RequestHeader // the request's: a chunked body's trailer fields land in it at the end
	left int64                   // bytes allowed before the cap
	size int64                   // Content-Length; -1 for chunked
	read int64
	cr   *connRec // the client connection's clock: each read is under ReadTimeout
	over bool     // the body crossed MaxBodyBytes
	err  error    // the client side failed
}

var bodyStreams = sync.Pool{New: func() any { return new(bodyStream) }}

func (b *bodyStream) Read(p []byte) (int, error) {
	if b.over {
		return 0, errBodyOverCap
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the cap is enough to know
	}
	b.cr.set(phRead)
	n, err := b.r.Read(p)
	b.cr.set(phBusy)
	b.read += int64(n)
	if int64(n) > b.left {
		b.over = true
		return 0, errBodyOverCap
	}
	b.left -= int64(n)
	if err == io.EOF && b.size >= 0 && b.read < b.size {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF && !dropTrailers(b.h) {
		err = errTrailer // aborts the upstream request before its trailer section
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// sendUpstream sends the request to the tenant's upstream and reads the
// response headers into up. A request body still on the client connection
// streams to the upstream through a bodyStream (such a request is never
// retried: its body cannot be sent twice). The answering pool member is
// kept for the access log.
func (s *Server) sendUpstream(ctx *fasthttp.RequestCtx, tn *tenant, up *fasthttp.Response) error {
	req := &ctx.Request
	rs := req.BodyStream()
	if rs == nil {
		t, err := tn.upstream.do(req, up)
		tn.upstream.answered(ctx, t)
		return err
	}
	cl := req.Header.ContentLength()
	if cl == 0 {
		// Nothing to stream: forward it as a request without a body.
		req.ResetBody()
		t, err := tn.upstream.do(req, up)
		tn.upstream.answered(ctx, t)
		return err
	}
	b := bodyStreams.Get().(*bodyStream)
	*b = bodyStream{r: rs, h: &req.Header, left: int64(s.opts.MaxBodyBytes), size: int64(cl), cr: s.clock.rec(ctx.Conn())}
	req.SetBodyStream(b, cl)
	t, err := tn.upstream.do(req, up)
	tn.upstream.answered(ctx, t)
	_ = req.CloseBodyStream() // drops b from the request (a failed dial never read it)
	over, rerr := b.over, b.err
	*b = bodyStream{}
	bodyStreams.Put(b)
	switch {
	case err == nil:
		return nil
	case over:
		// Nothing was sent to the client yet: a clean 413. fasthttp drains
		// a little of the rest, then closes the connection.
		return ErrTooLarge
	case rerr != nil:
		ctx.SetConnectionClose()
		return errBodyRead
	}
	return err
}

// dropTrailers discards the trailer fields of a chunked request body,
// which fasthttp reads into h when the body ends. They are never forwarded
// or read: the header checks (sanitizeRequest) ran on the header section
// before they arrived, fasthttp's Peek answers from them when the header
// section lacks a name, and removing the Trailer header (stripHopByHop)
// would move them into the header section. So a client could otherwise
// send X-Safeclose-User, a claim or Forwarded after its body. RFC 9110
// §6.5.1 lets a recipient discard trailer fields; nginx does too. A field
// of the same name in the header section goes with it. It reports false
// if a field is still there afterwards, and the request is then refused.
func dropTrailers(h *fasthttp.RequestHeader) bool {
	keys := h.PeekTrailerKeys()
	if len(keys) == 0 {
		return true
	}
	var nb [256]byte // the names, copied: deleting changes the set
	var eb [8]int
	names, ends := nb[:0], eb[:0]
	for _, k := range keys {
		names = append(names, k...)
		ends = append(ends, len(names))
	}
	delNames(h, names, ends)
	h.Del(fasthttp.HeaderTrailer) // forgets the set; no values are left to move
	return len(h.PeekTrailerKeys()) == 0 && len(h.TrailerHeader()) == 2
}

// lingerMax is the most of a refused request body that is read and dropped
// before the 413 goes out. Closing with the client's bytes unread makes the
// kernel send a reset, and a client still writing its body sees "connection
// reset" instead of the answer (nginx's lingering close solves the same);
// a body declared larger than this is not waited for.
const lingerMax = 1 << 20

// linger reads and drops a refused body of declared size n (at most
// lingerMax), within the read timeout.
func (s *Server) linger(ctx *fasthttp.RequestCtx, r io.Reader, n int) {
	if r == nil || n <= 0 || n > lingerMax {
		return
	}
	cr := s.clock.rec(ctx.Conn())
	cr.set(phRead)
	_, _ = io.CopyN(io.Discard, r, int64(n))
	cr.set(phBusy)
}
