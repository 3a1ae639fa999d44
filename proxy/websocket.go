package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// WebSockets (issue 13): an upgrade request is authenticated and gets the
// identity headers like any other; then Safeclose dials the upstream
// itself, sends the sanitised request with exactly "Connection: Upgrade"
// and "Upgrade: websocket", and, once the upstream answers 101, tunnels
// bytes both ways. Frames are not parsed.

// isWebSocketUpgrade reports a genuine WebSocket upgrade: GET, a Connection
// header naming "upgrade" and "Upgrade: websocket". It must run before
// stripHopByHop, which removes both.
func isWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	if !h.IsGet() {
		return false
	}
	var conn, upg bool
	for k, v := range h.All() {
		switch {
		case bytes.EqualFold(k, []byte("connection")):
			conn = conn || namedIn(v, []byte("upgrade"))
		case bytes.EqualFold(k, []byte("upgrade")):
			upg = upg || namedIn(v, []byte("websocket"))
		}
	}
	return conn && upg
}

// applyPassThroughDefaults fills the issue 13 Options defaults.
func applyPassThroughDefaults(o *Options) {
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.MaxWebSockets == 0 {
		o.MaxWebSockets = DefaultMaxWebSockets
	}
	if o.WebSocketIdleTimeout == 0 {
		o.WebSocketIdleTimeout = DefaultWebSocketIdleTimeout
	}
}

// tunnels are a tenant's open WebSocket tunnels: counted against the cap
// (from the upgrade request on) and closed together by closeAll.
type tunnels struct {
	mu     sync.Mutex
	n      int // reserved slots, open tunnels included
	open   map[*tunnel]struct{}
	closed bool
	done   sync.WaitGroup // one per added tunnel, until its handler ends
}

func (r *tunnels) reserve(max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.n >= max {
		return false
	}
	r.n++
	return true
}

func (r *tunnels) release() {
	r.mu.Lock()
	r.n--
	r.mu.Unlock()
}

// add registers t; it reports false (and the caller closes t) once
// closeAll has run.
func (r *tunnels) add(t *tunnel) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.open == nil {
		r.open = map[*tunnel]struct{}{}
	}
	r.open[t] = struct{}{}
	r.done.Add(1)
	return true
}

func (r *tunnels) remove(t *tunnel) {
	r.mu.Lock()
	delete(r.open, t)
	r.n--
	r.mu.Unlock()
	r.done.Done()
}

// closeAll ends every tunnel with a close frame saying 1001 (going away;
// websocket_close.go) and refuses new ones. It does not wait for the
// goodbyes; wait does. A nil set (a tenant that was never built, issue
// 9.15) has nothing to close.
func (r *tunnels) closeAll() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.closed = true
	open := make([]*tunnel, 0, len(r.open))
	for t := range r.open {
		open = append(open, t)
	}
	r.mu.Unlock()
	for _, t := range open {
		t.goAway()
	}
}

// wait returns once every tunnel added before closeAll has ended.
func (r *tunnels) wait() {
	if r != nil {
		r.done.Wait()
	}
}

// count is the number of reserved and open tunnels.
func (r *tunnels) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// tunnel is one client↔upstream byte pipe.
type tunnel struct {
	client, up     net.Conn
	once           sync.Once
	last           atomic.Int64 // unix nanos of the last byte either way
	closed         atomic.Bool
	away           atomic.Bool // ended by Safeclose: say 1001 (websocket_close.go)
	toClient, toUp frames      // frame boundaries of what each pipe wrote
	s              *Server     // counts a recovered panic (recover.go)
}

// close ends the tunnel at once (a peer hung up, or it was idle).
func (t *tunnel) close() { t.stop(false) }

// proxyWebSocket forwards an authenticated upgrade request (headers
// already sanitised and identity set) and, on 101, hijacks the client
// connection into a tunnel. A refused upgrade is relayed as a response.
func (s *Server) proxyWebSocket(ctx *fasthttp.RequestCtx, tn *tenant) error {
	if !tn.ws.reserve(s.opts.MaxWebSockets) {
		return ErrWebSocketsFull
	}
	up, br, err := s.dialUpgrade(ctx, tn)
	if err != nil {
		tn.ws.release()
		return err
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.Header.SetNoDefaultContentType(true)
	_ = up.SetReadDeadline(time.Now().Add(tn.upstream.timeouts.ResponseHeader))
	if err := resp.Header.Read(br); err != nil {
		up.Close()
		tn.ws.release()
		return upstreamError(err)
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols ||
		!namedIn(resp.Header.Peek("Upgrade"), []byte("websocket")) {
		// Refused (or not understood): relay the answer, bounded.
		defer up.Close()
		tn.ws.release()
		if resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
			return fmt.Errorf("%w: upstream switched to another protocol", ErrUpstream)
		}
		if err := resp.ReadBody(br, int(min(s.opts.MaxResponseBytes, 1<<30))); err != nil {
			return upstreamError(err)
		}
		resp.Header.CopyTo(&ctx.Response.Header)
		stripHopByHopResp(&ctx.Response.Header)
		ctx.Response.SetBody(resp.Body())
		ctx.SetConnectionClose()
		return nil
	}
	if !wsAcceptMatches(ctx.Request.Header.Peek("Sec-WebSocket-Key"), resp.Header.Peek("Sec-WebSocket-Accept")) {
		up.Close()
		tn.ws.release()
		return fmt.Errorf("%w: upstream answered 101 without the Sec-WebSocket-Accept of the client's key", ErrUpstream)
	}
	_ = up.SetReadDeadline(time.Time{})
	stripHopByHopResp(&resp.Header)
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for k, v := range resp.Header.All() {
		if bytes.EqualFold(k, []byte("content-length")) {
			continue
		}
		head.Write(k)
		head.WriteString(": ")
		head.Write(v)
		head.WriteString("\r\n")
	}
	head.WriteString("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	// Bytes the upstream sent right after its 101 travel first.
	pending, _ := br.Peek(br.Buffered())
	pending = append(head.Bytes(), pending...)
	idle := s.opts.WebSocketIdleTimeout
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) // for metrics and logs; the hijack writes the answer
	ctx.HijackSetNoResponse(true)
	early := len(pending) - head.Len()
	ctx.Hijack(func(c net.Conn) {
		defer s.recoverTo(panicTunnel, nil) // runs in its own goroutine
		t := &tunnel{client: c, up: up, s: s}
		if !tn.ws.add(t) {
			t.close()
			tn.ws.release()
			return
		}
		defer tn.ws.remove(t)
		defer t.shut()
		t.toClient.feed(pending[len(pending)-early:])
		if _, err := c.Write(pending); err != nil {
			return
		}
		t.run(idle)
	})
	return nil
}

// wsAcceptMatches reports whether accept is the Sec-WebSocket-Accept a
// WebSocket server answers to key (RFC 6455 §4.2.2: base64 of the SHA-1 of
// the key and a fixed GUID). A 101 without it is not a WebSocket server
// agreeing: a tunnel to an upstream that answered 101 by mistake would let
// the client send it raw requests that no header check sees. No key, no
// match.
func wsAcceptMatches(key, accept []byte) bool {
	key = bytes.TrimSpace(key)
	if len(key) == 0 {
		return false
	}
	h := sha1.New()
	h.Write(key)
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	var want [28]byte
	base64.StdEncoding.Encode(want[:], h.Sum(nil))
	return bytes.Equal(bytes.TrimSpace(accept), want[:])
}

// dialUpgrade connects to an upstream target (the next one on a connect
// failure) and writes the upgrade request. The request has no body.
func (s *Server) dialUpgrade(ctx *fasthttp.RequestCtx, tn *tenant) (net.Conn, *bufio.Reader, error) {
	p := tn.upstream
	var tried []*target
	var err error
	for range p.targets {
		t := p.pick(tried)
		if t == nil {
			break
		}
		tried = append(tried, t)
		var c net.Conn
		c, err = t.dialRaw(p.timeouts.Connect)
		if err != nil {
			var de *dialError
			if errors.As(err, &de) {
				p.failed(t)
				continue
			}
			break
		}
		p.ok(t)
		p.answered(ctx, t)
		var req bytes.Buffer
		h := &ctx.Request.Header
		req.Write(h.Method())
		req.WriteByte(' ')
		req.Write(h.RequestURI())
		req.WriteString(" HTTP/1.1\r\n")
		for k, v := range h.All() {
			if bytes.EqualFold(k, []byte("content-length")) || bytes.EqualFold(k, []byte("transfer-encoding")) {
				continue
			}
			req.Write(k)
			req.WriteString(": ")
			req.Write(v)
			req.WriteString("\r\n")
		}
		req.WriteString("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_ = c.SetWriteDeadline(time.Now().Add(p.timeouts.ResponseHeader))
		if _, err = c.Write(req.Bytes()); err != nil {
			c.Close()
			break
		}
		_ = c.SetWriteDeadline(time.Time{})
		return c, bufio.NewReaderSize(c, upstreamHeaderBytes), nil // read until the 101 is parsed, then dropped
	}
	return nil, nil, upstreamError(err)
}

// run copies both ways until either side closes, or nothing has moved
// either way for idle. It returns when both copies have stopped.
func (t *tunnel) run(idle time.Duration) {
	t.last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		defer t.s.recoverTo(panicTunnel, nil)
		t.pipe(t.up, t.client, &t.toUp, idle)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		defer t.s.recoverTo(panicTunnel, nil)
		t.pipe(t.client, t.up, &t.toClient, idle)
	}()
	<-done
	t.close() // one side ended: end the other
	<-done
}

// pipe copies src to dst, following the frames written in f. A read that
// times out ends the pipe only when the whole tunnel has been idle for
// idle.
func (t *tunnel) pipe(dst, src net.Conn, f *frames, idle time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		if t.closed.Load() {
			return // stop set closed before its past deadline, which this may have replaced
		}
		n, err := src.Read(buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			w, werr := dst.Write(buf[:n])
			f.feed(buf[:w])
			if werr != nil {
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !t.closed.Load() && time.Since(time.Unix(0, t.last.Load())) < idle {
				continue // the other direction is busy
			}
			return // EOF or a real error: run ends the tunnel
		}
	}
}

// adoptTunnels gives each tenant of the new table that existed in the old
// one the old tunnel set, so a reload neither drops its WebSockets nor
// resets its cap.
func adoptTunnels(nt, old *table) {
	if old == nil {
		return
	}
	for name, tn := range nt.tenants {
		if o := old.tenants[name]; o != nil {
			tn.ws = o.ws
		}
	}
}

// closeRemoved releases what the old table's tenants held: idle upstream
// connections, and the WebSocket tunnels of tenants the new table removed.
func closeRemoved(old, nt *table) {
	closeUpstreams(old)
	for name, tn := range old.tenants {
		if _, kept := nt.tenants[name]; !kept {
			tn.ws.closeAll()
		}
	}
}

// waitTunnels waits for every tenant's tunnels to have said goodbye.
func waitTunnels(t *table) {
	if t == nil {
		return
	}
	for _, tn := range t.tenants {
		tn.ws.wait()
	}
}

// closeUpstreams closes every tenant's idle upstream connections: after
// Shutdown or a Reload no request will reuse them, and they would stay open
// until their idle timeout.
func closeUpstreams(t *table) {
	if t == nil {
		return
	}
	for _, tn := range t.tenants {
		if tn.upstream != nil {
			tn.upstream.closeIdle()
		}
	}
}

// closeTunnels closes every tenant's tunnels (shutdown).
func closeTunnels(t *table) {
	if t == nil {
		return
	}
	for _, tn := range t.tenants {
		tn.ws.closeAll()
	}
}
