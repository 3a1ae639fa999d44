package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// A proxied request used to cost four system calls on the upstream
// connection: the reuse check's non-blocking read (upstream_fresh.go), the
// write, a read that finds no answer yet (EAGAIN, after which the runtime
// parks the goroutine until the socket is readable), and the read of the
// answer. sendLast does the first three as two: inside one RawConn.Read,
// it checks the connection, writes the request's last bytes itself, and
// then lets the runtime wait for readability without the empty read. The
// check loses nothing: it still runs before the request is written, on
// the same socket, and RawConn.Read arms the readiness notification before
// it runs, so an answer that arrives right after the write still wakes the
// wait. See RATIONALE.md "Why the upstream write waits for the answer".

// sendConn is the part of deadlineConn that sends a request's last bytes.
type sendConn struct {
	last    bool  // set by the transport: the next Write ends a request
	waitErr error // the wait for the answer failed; the next Read returns it
	sendFn  func(fd uintptr) bool
	out     []byte // what sendFn writes
	sent    int
	step    sendStep
}

type sendStep uint8

const (
	stepCheck sendStep = iota // the reuse check's read
	stepSend                  // writing out
	stepWait                  // all written; called again once readable
	stepStale                 // the check found bytes or a hang-up
	stepStop                  // a write could not finish (EAGAIN or an error)
)

// sendLast writes b, the end of a request, and waits until the answer can
// be read, checking a reused connection first when check is set. It
// reports how much of b went out, whether the check ran, and whether it
// found the connection stale (then nothing was written). A wait that
// fails (the read deadline, a closed connection) is kept in waitErr for
// the next Read, where the usual read would have met it.
func (c *deadlineConn) sendLast(b []byte, check bool) (sent int, checked, stale bool) {
	if now := monoNow(); due(c.readAt, now, c.idle) { // the wait runs under the read deadline
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
			return 0, false, false
		}
		c.readAt = now
	}
	if c.sendFn == nil {
		c.sendFn = c.sendStep // one closure per connection, not per request
	}
	c.out, c.sent, c.step = b, 0, stepSend
	if check {
		c.step = stepCheck
	}
	err := c.raw.Read(c.sendFn)
	sent, step := c.sent, c.step
	c.out = nil
	if err != nil && step == stepWait {
		var oe *net.OpError
		if errors.As(err, &oe) { // as the read that would have met it reports it
			e := *oe
			e.Op = "read"
			err = &e
		}
		c.waitErr = err
	}
	return sent, check && step != stepCheck, step == stepStale
}

// sendStep is sendLast's RawConn.Read callback: it returns false only
// when the whole request is out, so the runtime waits for the answer.
func (c *deadlineConn) sendStep(fd uintptr) bool {
	switch c.step {
	case stepCheck:
		if _, err := readFD(fd, c.probe[:]); err == nil {
			c.step = stepStale // unsolicited bytes, or the upstream hung up
			return true
		}
		c.step = stepSend // EAGAIN: nothing was sent (other errors surface on the write)
		fallthrough
	case stepSend:
		for c.sent < len(c.out) {
			n, err := writeFD(fd, c.out[c.sent:])
			if n > 0 {
				c.sent += n
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				c.step = stepStop
				return true
			}
		}
		c.step = stepWait
		return false
	default: // stepWait: the answer is readable (or the socket hung up)
		return true
	}
}
