package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
)

// Issue 9.2 (second trust pass): an upstream answer that sends more bytes
// than it declares (a Content-Length smaller than its body, a response
// smuggled after it) leaves those bytes on the pooled connection. The next
// request on it, maybe another user's, would read them as its answer. So
// before a request is written on a connection that already carried one, a
// non-blocking read checks that the upstream has sent nothing since: if it
// has (or has hung up), that connection is closed and a fresh one dialled
// in its place, transparently. For https targets freshTLS does the same
// one layer up (records the TLS layer already buffered count too).

// freshConn is the part of deadlineConn that checks a reused connection.
type freshConn struct {
	redial  func() (net.Conn, error) // nil: no check (TLS targets)
	raw     syscall.RawConn
	used    bool // a response was read since the last check
	probeFn func(fd uintptr) bool
	probe   [1]byte
	got     int  // probeFn's result: bytes read, 0 for EOF, -1 for nothing
	expired bool // deadlineConn.Read uses a past deadline (freshTLS's check)
}

// initFresh arms the check for a plain TCP connection c.
func (f *freshConn) initFresh(c net.Conn, redial func() (net.Conn, error)) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	f.raw, f.redial = raw, redial // redial nil: stale only (freshTLS)
	if f.probeFn == nil {
		f.probeFn = f.readNow // one closure per connection, not per request
	}
}

// readNow reads without waiting: it is done at once, data or not.
func (f *freshConn) readNow(fd uintptr) bool {
	n, err := readFD(fd, f.probe[:])
	switch {
	case err != nil:
		f.got = -1 // EAGAIN: nothing was sent; other errors surface on use
	default:
		f.got = n // n > 0: unsolicited bytes; 0: the upstream hung up
	}
	return true
}

// stale reports whether the upstream sent anything (or hung up) since the
// last answer on this connection ended.
func (f *freshConn) stale() bool {
	if f.raw == nil {
		return false
	}
	f.got = -1
	if err := f.raw.Read(f.probeFn); err != nil {
		return true
	}
	return f.got >= 0
}

// freshTLS is an https upstream connection with the same check. fasthttp
// takes a conn with a Handshake method as TLS already. The TLS layer may
// hold whole records it read ahead, which the socket check cannot see, so
// it is also read with a past deadline: buffered bytes come back, an empty
// buffer times out at once without touching the socket. A late TLS record
// on the socket (a session ticket) costs a needless new connection, never
// a wrong answer.
type freshTLS struct {
	*tls.Conn
	raw   *deadlineConn
	cfg   *tls.Config
	dial  func() (*deadlineConn, error)
	used  bool
	probe [1]byte
}

func newFreshTLS(raw *deadlineConn, cfg *tls.Config, dial func() (*deadlineConn, error)) *freshTLS {
	raw.initFresh(raw.Conn, nil) // socket check only; freshTLS replaces the whole connection
	return &freshTLS{Conn: tls.Client(raw, cfg), raw: raw, cfg: cfg, dial: dial}
}

func (c *freshTLS) Read(b []byte) (int, error) {
	c.used = true
	return c.Conn.Read(b)
}

func (c *freshTLS) Write(b []byte) (int, error) {
	if c.used {
		c.used = false
		if c.residue() {
			c.Conn.Close()
			raw, err := c.dial()
			if err != nil {
				return 0, err
			}
			raw.initFresh(raw.Conn, nil)
			c.raw, c.Conn = raw, tls.Client(raw, c.cfg)
		}
	}
	return c.Conn.Write(b)
}

// residue reports bytes the upstream sent after its last answer, on the
// socket or inside the TLS layer, or a connection no longer usable.
func (c *freshTLS) residue() bool {
	if c.raw.stale() {
		return true
	}
	c.raw.expired = true
	n, err := c.Conn.Read(c.probe[:])
	c.raw.expired = false
	return n > 0 || !errors.Is(err, os.ErrDeadlineExceeded)
}
