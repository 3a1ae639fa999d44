package proxy

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/internal/loglimit"
)

// connLimit bounds the client connections open at once across the public
// listeners (Options.MaxConns) and, when MaxConnsPerIP is set, from one
// address. An idle keep-alive connection costs the server a goroutine and
// its buffers (~6–8 KiB, measured with 15,000 held open); without a bound a
// client holding connections open could take the process's memory, and with
// it every tenant (the third trust pass). A connection over a bound is
// refused as it is accepted: plain HTTP gets a JSON 503 (or 429 for the
// per-address bound) and is closed; a TLS connection is closed unanswered,
// since answering would first cost a handshake, the work being shed.
//
// Counting is in Accept (admit) and in fasthttp's ConnState hook (release,
// on StateClosed and StateHijacked), so the connection fasthttp serves is
// the *net.TCPConn itself: a wrapper would cost fasthttp's single-writev
// path for large responses (RATIONALE "Where a proxied request's CPU goes").
// A hijacked connection (a WebSocket tunnel) is released at the hijack;
// tunnels have their own bound, max_websockets per tenant.
type connLimit struct {
	max, perIP int
	open       atomic.Int64

	mu   sync.Mutex
	byIP map[netip.Addr]int // only when perIP > 0

	refused *prometheus.CounterVec
	linger  chan struct{} // bounds the refused connections being drained
	log     *slog.Logger
	logs    loglimit.Limiter // one refusal line a second, for every listener
}

// Why a connection was refused, as the metric's reason label.
const (
	refusedMaxConns      = "max_conns"
	refusedMaxConnsPerIP = "max_conns_per_ip"
)

// lingerSlots bounds the refused plain connections drained at once.
// Closing a socket whose peer is still sending resets the connection, and a
// client still writing its request body then fails on the write and never
// reads the refusal; so each refused connection is drained (up to
// lingerBytes, for lingerFor) after the answer and its FIN, as nginx's
// lingering close does. Past lingerSlots, a flood's refusals close at once.
const (
	lingerSlots = 256
	lingerFor   = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

func newConnLimit(max, perIP int, reg prometheus.Registerer, log *slog.Logger) *connLimit {
	l := &connLimit{max: max, perIP: perIP, linger: make(chan struct{}, lingerSlots), log: log}
	if perIP > 0 {
		l.byIP = map[netip.Addr]int{}
	}
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "safeclose_connections_refused_total",
		Help: "Client connections refused at accept, by the bound they were over (max_conns, max_conns_per_ip).",
	}, []string{"reason"})
	reg.MustRegister(l.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "safeclose_connections_open",
		Help: "Client connections open on the public listeners (WebSocket tunnels excluded).",
	}, func() float64 { return float64(l.open.Load()) }))
	return l
}

// remoteIP is the address c was accepted from (for a connection from a
// PROXY protocol balancer, the balancer's); ok is false for a peer that is
// not TCP.
func remoteIP(c net.Conn) (netip.Addr, bool) {
	if a, ok := acceptedAddr(c).(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// admit counts c in, or returns the bound it is over (and counts nothing).
func (l *connLimit) admit(c net.Conn) string {
	if l.open.Add(1) > int64(l.max) {
		l.open.Add(-1)
		return refusedMaxConns
	}
	if l.byIP == nil {
		return ""
	}
	ip, ok := remoteIP(c)
	if !ok {
		return ""
	}
	l.mu.Lock()
	n := l.byIP[ip]
	if n >= l.perIP {
		l.mu.Unlock()
		l.open.Add(-1)
		return refusedMaxConnsPerIP
	}
	l.byIP[ip] = n + 1
	l.mu.Unlock()
	return ""
}

// release counts c out; fasthttp calls it once per admitted connection.
func (l *connLimit) release(c net.Conn) {
	l.open.Add(-1)
	if l.byIP == nil {
		return
	}
	ip, ok := remoteIP(c)
	if !ok {
		return
	}
	l.mu.Lock()
	if n := l.byIP[ip]; n <= 1 {
		delete(l.byIP, ip)
	} else {
		l.byIP[ip] = n - 1
	}
	l.mu.Unlock()
}

// connState is fasthttp's ConnState hook.
func (l *connLimit) connState(c net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateClosed || st == fasthttp.StateHijacked {
		l.release(c)
	}
}

// Refusals, written whole before the connection is closed.
var (
	refuseMaxConns      = refusal(503, refusedMaxConns, "the server has too many open connections; retry shortly")
	refuseMaxConnsPerIP = refusal(429, refusedMaxConnsPerIP, "too many open connections from this address")
)

func refusal(status int, code, msg string) []byte {
	body := `{"error":{"code":"too_many_connections","message":"` + msg + `","limit":"` + code + `"}}`
	return []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) + "\r\n" +
		"Content-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// refuse answers and closes a connection admit turned away. It never
// blocks the accept loop: the answer fits an empty socket buffer, and the
// drain runs on its own goroutine.
func (l *connLimit) refuse(c net.Conn, reason string) {
	l.refused.WithLabelValues(reason).Inc()
	if n, ok := l.logs.Allow(time.Now()); ok {
		l.log.Warn("connection refused: over a connection bound", "bound", reason,
			"max_conns", l.max, "max_conns_per_ip", l.perIP, "suppressed_before", n)
	}
	if _, isTLS := c.(*tls.Conn); isTLS {
		c.Close()
		return
	}
	answer := refuseMaxConns
	if reason == refusedMaxConnsPerIP {
		answer = refuseMaxConnsPerIP
	}
	_ = c.SetWriteDeadline(time.Now().Add(lingerFor))
	if _, err := c.Write(answer); err != nil {
		c.Close()
		return
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return
	}
	select {
	case l.linger <- struct{}{}:
	default:
		c.Close()
		return
	}
	// Send FIN after the answer, then read what the client had sent until it
	// closes or lingerFor passes, so closing does not reset the connection
	// (and with it the answer) while its request is unread.
	_ = tc.CloseWrite()
	go func() {
		defer func() { <-l.linger }()
		defer tc.Close()
		_ = tc.SetReadDeadline(time.Now().Add(lingerFor))
		_, _ = io.Copy(io.Discard, io.LimitReader(tc, lingerBytes))
	}()
}
