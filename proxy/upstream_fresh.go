package proxy

import (
	"net"
	"syscall"
)

// Issue 9.2 (second trust pass): an upstream answer that sends more bytes
// than it declares (a Content-Length smaller than its body, a response
// smuggled after it) leaves those bytes on the pooled connection. The next
// request on it, maybe another user's, would read them as its answer. So
// before a request is written on a connection that already carried one, a
// non-blocking read checks that the upstream has sent nothing since: if it
// has (or has hung up), that connection is closed and a fresh one dialled
// in its place, transparently. Plain-HTTP targets only: on TLS the raw
// socket legitimately carries records between answers (session tickets),
// and the TLS layer must read them.

// freshConn is the part of deadlineConn that checks a reused connection.
type freshConn struct {
	redial  func() (net.Conn, error) // nil: no check (TLS targets)
	raw     syscall.RawConn
	used    bool // a response was read since the last check
	probeFn func(fd uintptr) bool
	probe   [1]byte
	got     int // probeFn's result: bytes read, 0 for EOF, -1 for nothing
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
	f.raw, f.redial = raw, redial
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
