package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Passive health: a target that fails to connect is skipped for
// ejectBase, doubled per consecutive failure, at most ejectMax.
const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

// pool is a tenant's upstream targets, balanced round-robin over the
// healthy ones. Each target keeps its own connection pool (a
// fasthttp.HostClient), so connections are reused. It is safe for
// concurrent use.
type pool struct {
	targets  []*target
	next     atomic.Uint32
	timeouts UpstreamTimeouts
	now      func() time.Time
}

// target is one upstream address.
type target struct {
	name   string // scheme://host:port, for logs
	url    string // as configured, for the access log
	addr   string // host:port
	host   string // for TLS verification
	scheme string
	hc     *fasthttp.HostClient
	tls    *tls.Config // nil for http
	dialer net.Dialer

	mu       sync.Mutex
	failures int
	until    time.Time // ejected until
	// sick is set while failures != 0, so the hot path (a healthy target)
	// reads neither the clock nor mu.
	sick atomic.Bool
}

// dialError marks a failure to connect: the request never left Safeclose,
// so it can go to another target.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func newPool(t Tenant, now func() time.Time) (*pool, error) {
	var urls []string
	if t.Upstream != "" {
		urls = append(urls, t.Upstream)
	}
	urls = append(urls, t.Upstreams...)
	if len(urls) == 0 {
		return nil, nil
	}
	to := t.UpstreamTimeouts
	if to.Connect <= 0 {
		to.Connect = 3 * time.Second
	}
	if to.ResponseHeader <= 0 {
		to.ResponseHeader = 30 * time.Second
	}
	if to.Idle <= 0 {
		to.Idle = 30 * time.Second
	}
	conns := t.UpstreamConns
	if conns == 0 {
		conns = DefaultUpstreamConns
	}
	p := &pool{timeouts: to, now: now}
	for _, raw := range urls {
		tg, err := newTarget(raw, conns, to, t.UpstreamCAs)
		if err != nil {
			return nil, err
		}
		p.targets = append(p.targets, tg)
	}
	return p, nil
}

func newTarget(raw string, conns int, to UpstreamTimeouts, cas *x509.CertPool) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("proxy: upstream %q is not an http(s) URL", raw)
	}
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	tg := &target{name: u.Scheme + "://" + addr, url: raw, addr: addr, host: u.Hostname(), scheme: u.Scheme}
	tg.dialer.Timeout = to.Connect
	if u.Scheme == "https" {
		tg.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		tg.tls.RootCAs = cas // nil: the system roots
	}
	tg.hc = &fasthttp.HostClient{
		Addr:      addr,
		Name:      "safeclose",
		IsTLS:     u.Scheme == "https",
		TLSConfig: tg.tls,
		MaxConns:  conns,
		// An answer's status line and headers; see upstreamHeaderBytes.
		ReadBufferSize: upstreamHeaderBytes,
		// No ReadTimeout or WriteTimeout: they would bound a whole
		// streamed body. deadlineConn bounds every read (ResponseHeader of
		// silence) and every write (upstreamWriteTimeout) instead.
		MaxIdleConnDuration:           to.Idle,
		MaxConnWaitTimeout:            5 * time.Second,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
		Transport:                     upstreamTransport{}, // small bodies are read whole (upstream_transport.go)
		// An unparsable answer's error must not quote the upstream's bytes
		// (cookies, tokens): it is logged as "request failed".
		SecureErrorLogMessage: true,
		RetryIfErr:            func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Dial: func(string) (net.Conn, error) {
			c, err := tg.dialer.Dial("tcp", addr)
			if err != nil {
				return nil, &dialError{err}
			}
			dc := &deadlineConn{Conn: c, idle: to.ResponseHeader, writeIdle: upstreamWriteTimeout}
			if tg.tls == nil { // upstream_fresh.go
				dc.initFresh(c, func() (net.Conn, error) { return tg.dialer.Dial("tcp", addr) })
				return dc, nil
			}
			return newFreshTLS(dc, tg.tls, func() (*deadlineConn, error) {
				c, err := tg.dialer.Dial("tcp", addr)
				if err != nil {
					return nil, &dialError{err}
				}
				return &deadlineConn{Conn: c, idle: to.ResponseHeader, writeIdle: upstreamWriteTimeout}, nil
			}), nil
		},
	}
	return tg, nil
}

// upstreamWriteTimeout bounds each write to an upstream: a request's
// headers, or one piece of a streamed request body.
const upstreamWriteTimeout = 30 * time.Second

// deadlineConn bounds every read by idle: a response's headers, and the
// silence between two pieces of its body, may take at most that long. Every
// write is bounded by writeIdle the same way, so a large streamed request
// body is not cut by a deadline for the whole of it.
//
// A deadline is re-armed only once the one set before is older than
// 1/rearmDiv of its bound: re-arming resets a runtime timer, ~2% of a
// proxied request's CPU when done on every read and write (issue 12's
// profile). The bound in force is then between (1-1/rearmDiv)×idle and
// idle: never longer than asked, at most 1/64 shorter.
//
// When a deadline was set is kept as a monotonic offset (monoNow), so a
// read or write that does not re-arm reads the clock once; time.Now reads
// it twice (wall and monotonic), and a clock read is ~0.1 µs on a KVM
// guest. The offset is taken before the deadline's time.Now, so the
// deadline is judged older than it is, never younger.
type deadlineConn struct {
	net.Conn
	idle, writeIdle time.Duration
	readAt, writeAt time.Duration // monoNow when the deadline in force was set; 0: none (or a past one)
	freshConn                     // checks a reused connection before each request (upstream_fresh.go)
	sendConn                      // sends a request's last bytes and waits for the answer (upstream_send.go)
}

const rearmDiv = 64

// monoEpoch is the origin of monoNow.
var monoEpoch = time.Now()

// monoNow is the monotonic time since monoEpoch, at least 1 (0 means unset).
func monoNow() time.Duration {
	return max(time.Since(monoEpoch), 1)
}

// due reports whether a deadline set at at (0: none) must be re-armed at
// now: it has fallen more than bound/rearmDiv behind.
func due(at, now, bound time.Duration) bool {
	return at == 0 || now-at > bound/rearmDiv
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.used = true
	if c.waitErr != nil { // sendLast's wait for the answer failed (upstream_send.go)
		err := c.waitErr
		c.waitErr = nil
		return 0, err
	}
	if c.expired {
		c.readAt = 0                                         // a past deadline: the next read sets a fresh one
		if err := c.Conn.SetReadDeadline(past); err != nil { // freshTLS's check: buffered bytes only
			return 0, err
		}
	} else if now := monoNow(); due(c.readAt, now, c.idle) {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
			return 0, err
		}
		c.readAt = now
	}
	return c.Conn.Read(b)
}

// SetReadDeadline is ignored: Read sets its own.
func (c *deadlineConn) SetReadDeadline(time.Time) error { return nil }

func (c *deadlineConn) Write(b []byte) (int, error) {
	check := c.used && c.redial != nil // the first write of the next request on a reused connection
	c.used = false
	if c.last {
		c.last = false
		if c.raw != nil && c.redial != nil {
			sent, checked, stale := c.sendLast(b, check)
			switch {
			case sent == len(b):
				return sent, nil
			case stale:
				if err := c.replace(); err != nil {
					return 0, err
				}
			case sent > 0: // the socket's buffer filled: the rest goes the usual way
				n, err := c.write(b[sent:])
				return sent + n, err
			}
			check = check && !checked
		}
	}
	if check && c.stale() {
		if err := c.replace(); err != nil {
			return 0, err
		}
	}
	return c.write(b)
}

// write writes b under the write deadline.
func (c *deadlineConn) write(b []byte) (int, error) {
	if now := monoNow(); due(c.writeAt, now, c.writeIdle) {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeIdle)); err != nil {
			return 0, err
		}
		c.writeAt = now
	}
	return c.Conn.Write(b)
}

// replace closes a connection the upstream desynchronised and dials a
// fresh one in its place (upstream_fresh.go).
func (c *deadlineConn) replace() error {
	c.Conn.Close()
	nc, err := c.redial()
	if err != nil {
		return &dialError{err}
	}
	c.Conn = nc
	c.readAt, c.writeAt = 0, 0
	c.initFresh(nc, c.redial)
	return nil
}

// SetWriteDeadline is ignored: Write sets its own.
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// pick returns the next healthy target not in tried, round-robin. When
// every untried target is ejected, it returns the one whose backoff ends
// first (a request is never refused for health alone).
func (p *pool) pick(tried []*target) *target {
	var now time.Time // read once, and only if a target is sick
	n := len(p.targets)
	start := 0
	if n > 1 {
		start = int(p.next.Add(1) - 1)
	}
	var best *target
	var bestUntil time.Time
	for i := 0; i < n; i++ {
		t := p.targets[(start+i)%n]
		if in(tried, t) {
			continue
		}
		if !t.sick.Load() {
			return t
		}
		if now.IsZero() {
			now = p.now()
		}
		t.mu.Lock()
		until := t.until
		t.mu.Unlock()
		if !now.Before(until) {
			return t
		}
		if best == nil || until.Before(bestUntil) {
			best, bestUntil = t, until
		}
	}
	return best
}

func in(ts []*target, t *target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// failed ejects t for an exponential backoff.
func (p *pool) failed(t *target) {
	t.mu.Lock()
	t.failures++
	d := ejectBase << min(t.failures-1, 10)
	t.until = p.now().Add(min(d, ejectMax))
	t.sick.Store(true)
	t.mu.Unlock()
}

func (p *pool) ok(t *target) {
	if !t.sick.Load() {
		return
	}
	t.mu.Lock()
	t.failures, t.until = 0, time.Time{}
	t.sick.Store(false)
	t.mu.Unlock()
}

// idempotent reports whether req may be sent again after a connection
// failure: GET, HEAD, OPTIONS, PUT or DELETE without a body. A streamed
// body is never sent twice (and is never read here: Body would buffer it).
func idempotent(req *fasthttp.Request) bool {
	if req.IsBodyStream() {
		return false
	}
	switch string(req.Header.Method()) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE":
		return len(req.Body()) == 0 && req.Header.ContentLength() <= 0
	}
	return false
}

// do sends req to a target and reads the response headers into resp; the
// body is left streaming (resp.BodyStream, nil when there is none). A
// connection failure ejects the target; an idempotent request then goes to
// the next one. It returns the target that answered.
func (p *pool) do(req *fasthttp.Request, resp *fasthttp.Response) (*target, error) {
	retry := idempotent(req)
	var tried []*target
	var err error
	for range p.targets {
		t := p.pick(tried)
		if t == nil {
			break
		}
		tried = append(tried, t)
		req.URI().SetScheme(t.scheme)
		err = t.hc.Do(req, resp)
		if err == nil {
			p.ok(t)
			return t, nil
		}
		var de *dialError
		dial := errors.As(err, &de)
		if dial {
			p.failed(t)
		}
		if !retry || !(dial || connLost(err)) {
			break
		}
	}
	return nil, upstreamError(err)
}

// upstreamKey is the RequestCtx user value holding the pool member that
// answered, for the access log (set only for pools of several members).
const upstreamKey = "safeclose.upstream"

// answered records t as the member that answered ctx's request.
func (p *pool) answered(ctx *fasthttp.RequestCtx, t *target) {
	if t != nil && len(p.targets) > 1 {
		ctx.SetUserValue(upstreamKey, t)
	}
}

// member names the upstream ctx's request went to: the single target, or
// the pool member that answered ("" when none did).
func (p *pool) member(ctx *fasthttp.RequestCtx) string {
	if len(p.targets) == 1 {
		return p.targets[0].url
	}
	if t, ok := ctx.UserValue(upstreamKey).(*target); ok {
		return t.url
	}
	return ""
}

// connLost reports a pooled connection the upstream had closed before
// answering: nothing was processed, an idempotent request may be retried.
func connLost(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// upstreamError classifies a failed upstream call: a timeout waiting for
// the answer is 504, anything else (including a connect timeout) 502.
func upstreamError(err error) error {
	var de *dialError
	var ne interface{ Timeout() bool }
	if !errors.As(err, &de) && (errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrUpstreamTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrUpstream, err)
}

// closeIdle closes every target's idle connections.
func (p *pool) closeIdle() {
	for _, t := range p.targets {
		t.hc.CloseIdleConnections()
	}
}

// dialRaw connects to t (TLS included) for a WebSocket tunnel.
func (t *target) dialRaw(timeout time.Duration) (net.Conn, error) {
	c, err := t.dialer.Dial("tcp", t.addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if t.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, t.tls)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
