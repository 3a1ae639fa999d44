package proxy

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// countDeadlines counts the deadlines set on a connection.
type countDeadlines struct {
	net.Conn
	reads, writes int
}

func (c *countDeadlines) SetReadDeadline(t time.Time) error {
	c.reads++
	return c.Conn.SetReadDeadline(t)
}

func (c *countDeadlines) SetWriteDeadline(t time.Time) error {
	c.writes++
	return c.Conn.SetWriteDeadline(t)
}

// TestDeadlineRearmedLazily: back-to-back reads and writes on an upstream
// connection re-arm their deadlines once, not per call (a runtime timer
// reset each time, ~2% of a proxied request's CPU).
func TestDeadlineRearmedLazily(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cd := &countDeadlines{Conn: a}
	dc := &deadlineConn{Conn: cd, idle: time.Minute, writeIdle: time.Minute}
	go func() { // echo
		buf := make([]byte, 16)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			if _, err := b.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 16)
	for i := 0; i < 100; i++ {
		if _, err := dc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if cd.reads != 1 || cd.writes != 1 {
		t.Fatalf("100 reads and writes set %d read and %d write deadlines, want 1 and 1", cd.reads, cd.writes)
	}
}

// TestDeadlineStillBoundsReads: the lazy re-arm never lets a read wait past
// its bound, even after a long idle spell since the last deadline was set,
// and a past deadline (freshTLS's probe) is followed by a fresh one.
func TestDeadlineStillBoundsReads(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := &deadlineConn{Conn: a, idle: 50 * time.Millisecond, writeIdle: time.Minute}
	go b.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := dc.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond) // the first deadline has passed
	go b.Write([]byte("y"))            // so a read must re-arm or it fails at once
	if _, err := dc.Read(buf); err != nil || buf[0] != 'y' {
		t.Fatalf("read after idle: %q %v", buf, err)
	}
	dc.expired = true
	if _, err := dc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("probe read: %v, want a deadline error", err)
	}
	dc.expired = false
	go b.Write([]byte("z"))
	if _, err := dc.Read(buf); err != nil || buf[0] != 'z' {
		t.Fatalf("read after the probe: %q %v", buf, err)
	}
	if _, err := dc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) { // nothing sent: bounded by idle
		t.Fatalf("silent upstream: %v, want a deadline error", err)
	}
}
