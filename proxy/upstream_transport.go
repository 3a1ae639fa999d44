package proxy

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// upstreamTransport is every target's fasthttp.RoundTripper. It is
// fasthttp's own transport (client.go, transport.RoundTrip, for a
// HostClient without ReadTimeout, WriteTimeout or MaxConnDuration, as
// newTarget builds them) with one change: whether the body streams is
// decided after the response headers, not before. A sized, ordinary
// response of at most maxBufferedResponse bytes is read whole into the
// response (fasthttp's buffered path: no stream objects, and the body is
// handed to the client's response without a copy, relayResponse); anything
// else (chunked, larger, unsized, text/event-stream) streams as before.
// See RATIONALE.md "Why small upstream responses are read by the transport".
type upstreamTransport struct{}

func (upstreamTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	// hc.Do has reset resp and set resp.StreamBody (StreamResponseBody).
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)

	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		dc, _ := conn.(*deadlineConn)
		if dc != nil {
			dc.last = true // the flush ends the request: it also waits for the answer (upstream_send.go)
		}
		err = bw.Flush()
		if dc != nil {
			dc.last = false // nothing was left to flush
		}
	}
	hc.ReleaseWriter(bw)
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if err != nil {
		hc.CloseConn(cc)
		return true, err
	}

	// Headers first (1xx interim answers consumed): SkipBody stops
	// ReadLimitBody before the body.
	skip := resp.SkipBody || req.Header.IsHead()
	resp.SkipBody = true
	br := hc.AcquireReader(conn)
	err = resp.ReadLimitBody(br, 0)
	resp.SkipBody = skip
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return !errors.Is(err, fasthttp.ErrBodyTooLarge), err
	}
	closeConn := req.ConnectionClose() || resp.ConnectionClose()
	cl := resp.Header.ContentLength()
	switch {
	case skip || noBody(resp.StatusCode()):
		// No body: the connection is free now.
	case cl >= 0 && cl <= maxBufferedResponse && !isEventStream(&resp.Header):
		resp.StreamBody = false
		if err = resp.ReadBody(br, 0); err != nil { // exactly cl bytes
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			return false, err
		}
	default:
		sr := fasthttp.AcquireResponse()
		resp.Header.CopyTo(&sr.Header)
		sr.StreamBody = true
		_ = sr.ReadBody(br, 0) // with StreamBody it only sets up the stream
		cls := resp.Header.ConnectionClose()
		resp.SetBodyStream(&streamedBody{
			rs: sr.BodyStream(), sr: sr, full: cl == 0,
			interrupt: func() { _ = conn.Close() },
			release: func(discard bool) {
				sr.CloseBodyStream() //nolint:errcheck // a fasthttp stream's close only releases it
				fasthttp.ReleaseResponse(sr)
				hc.ReleaseReader(br)
				if closeConn || discard || resp.ConnectionClose() {
					hc.CloseConn(cc)
				} else {
					hc.ReleaseConn(cc)
				}
			},
		}, cl)
		if !cls { // SetBodyStream marks an unsized body's header close
			resp.Header.ResetConnectionClose()
		}
		return false, nil
	}
	hc.ReleaseReader(br)
	if closeConn {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// noBody reports a status whose response has no body (RFC 9110 6.4.1).
func noBody(status int) bool {
	return status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
}

func isEventStream(h *fasthttp.ResponseHeader) bool {
	return bytes.HasPrefix(h.ContentType(), []byte("text/event-stream"))
}

// streamedBody is a streamed upstream body that gives its connection back
// on close: to the pool once read to its end, closed otherwise. A close
// while a Read is blocked (another goroutine) closes the connection to
// unblock it first, as fasthttp's own stream does.
type streamedBody struct {
	rs        io.Reader
	sr        *fasthttp.Response // owns rs and the header it reads trailers into
	interrupt func()
	release   func(discard bool)
	full      bool // read to io.EOF
	closed    atomic.Bool
	mu        sync.Mutex
	once      sync.Once
}

func (s *streamedBody) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	n, err := s.rs.Read(p)
	if errors.Is(err, io.EOF) {
		s.full = true
	}
	return n, err
}

// CloseWithError implements fasthttp.ReadCloserWithError, which
// Response.CloseBodyStream calls.
func (s *streamedBody) CloseWithError(err error) error {
	s.once.Do(func() {
		s.closed.Store(true)
		locked := s.mu.TryLock()
		discard := err != nil || !locked || !s.full
		if discard {
			s.interrupt()
		}
		if !locked {
			s.mu.Lock() // the interrupt ends the blocked Read
		}
		defer s.mu.Unlock()
		s.release(discard)
	})
	return nil
}
