package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sendPeer is a loopback upstream for sendLast's tests: each accepted
// connection goes to serve, in order.
func sendPeer(t *testing.T, serve ...func(net.Conn)) (dial func() (net.Conn, error)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for _, fn := range serve {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
}

func sendConnFor(t *testing.T, dial func() (net.Conn, error), idle time.Duration) *deadlineConn {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	dc := &deadlineConn{Conn: c, idle: idle, writeIdle: time.Minute}
	dc.initFresh(c, dial)
	if dc.raw == nil {
		t.Skip("no raw socket access on this platform")
	}
	t.Cleanup(func() { dc.Close() })
	return dc
}

// lastWrite writes b as the end of a request, as the transport does.
func lastWrite(t *testing.T, dc *deadlineConn, b string) {
	t.Helper()
	dc.last = true
	n, err := dc.Write([]byte(b))
	if err != nil || n != len(b) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(b))
	}
	if dc.last {
		t.Fatal("last still set after the write")
	}
}

func readAnswer(t *testing.T, dc *deadlineConn) string {
	t.Helper()
	buf := make([]byte, 64)
	n, err := dc.Read(buf)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return string(buf[:n])
}

// TestSendLastReplacesStaleConnection: bytes an upstream sends after its
// answer (a response smuggled behind it) are found by the check that now
// runs inside the final write, and the next request goes on a fresh
// connection: it never reads them as its answer.
func TestSendLastReplacesStaleConnection(t *testing.T) {
	firstClosed := make(chan error, 1)
	smuggled := make(chan struct{})
	dial := sendPeer(t,
		func(c net.Conn) {
			buf := make([]byte, 64)
			if _, err := c.Read(buf); err != nil {
				return
			}
			io.WriteString(c, "answer-1")
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "SMUGGLED") // after the answer was read
			close(smuggled)               // on loopback, in the client's socket once written
			_, err := c.Read(buf)
			firstClosed <- err
		},
		func(c net.Conn) {
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			io.WriteString(c, "answer-to-"+string(buf[:n]))
		})
	dc := sendConnFor(t, dial, 5*time.Second)
	lastWrite(t, dc, "req-1")
	if got := readAnswer(t, dc); got != "answer-1" {
		t.Fatalf("first answer %q", got)
	}
	<-smuggled
	lastWrite(t, dc, "req-2")
	if got := readAnswer(t, dc); got != "answer-to-req-2" {
		t.Fatalf("second request's answer %q, want it from a fresh connection", got)
	}
	select {
	case err := <-firstClosed:
		if err == nil {
			t.Fatal("the stale connection got more bytes instead of being closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stale connection was not closed")
	}
}

// TestSendLastCheckedConnectionKept: a reused connection with nothing
// pending keeps serving; the check does not cost it.
func TestSendLastCheckedConnectionKept(t *testing.T) {
	dial := sendPeer(t, func(c net.Conn) {
		buf := make([]byte, 64)
		for i := 0; ; i++ {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			io.WriteString(c, "answer-to-"+string(buf[:n]))
		}
	})
	dc := sendConnFor(t, dial, 5*time.Second)
	first := dc.Conn
	for i := range 20 {
		req := "req-" + strconv.Itoa(i)
		lastWrite(t, dc, req)
		if got := readAnswer(t, dc); got != "answer-to-"+req {
			t.Fatalf("answer %q to %s", got, req)
		}
	}
	if dc.Conn != first {
		t.Fatal("a clean connection was replaced")
	}
}

// TestSendLastWaitBoundedByIdle: an upstream that never answers is still
// cut at the read bound, and the Read after the write reports it as a read
// timeout (what the proxy turns into a 504), once, not after a second wait.
func TestSendLastWaitBoundedByIdle(t *testing.T) {
	dial := sendPeer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	const idle = 150 * time.Millisecond
	dc := sendConnFor(t, dial, idle)
	start := time.Now()
	lastWrite(t, dc, "req")
	_, err := dc.Read(make([]byte, 8))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after a silent upstream: %v, want a deadline error", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %#v, want a read OpError", err)
	}
	if took < idle-idle/rearmDiv {
		t.Fatalf("cut after %v, before the %v bound", took, idle)
	}
	if took > 10*idle {
		t.Fatalf("cut after %v: the bound %v was not kept", took, idle)
	}
}

// TestSendLastLargeRequest: a request larger than the socket's buffers
// (the peer reads late) is written partly by sendLast and the rest by the
// usual write, intact and in order.
func TestSendLastLargeRequest(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	got := make(chan []byte, 1)
	dial := sendPeer(t, func(c net.Conn) {
		time.Sleep(100 * time.Millisecond) // let the client's socket fill
		b := make([]byte, len(want))
		if _, err := io.ReadFull(bufio.NewReader(c), b); err != nil {
			got <- nil
			return
		}
		got <- b
		io.WriteString(c, "ok")
	})
	dc := sendConnFor(t, dial, 5*time.Second)
	dc.last = true
	n, err := dc.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatal("the upstream did not receive the request intact")
	}
	if a := readAnswer(t, dc); a != "ok" {
		t.Fatalf("answer %q", a)
	}
}

// TestSendLastSavesARead: sending a request's end with sendLast makes one
// read system call fewer per exchange than writing it and reading at once
// (which finds nothing, then waits): the empty read is gone. Counted in
// /proc/self/io (read calls of the whole process, this test's peer
// included, which does the same in both halves).
func TestSendLastSavesARead(t *testing.T) {
	syscr := func() int {
		b, err := os.ReadFile("/proc/self/io")
		if err != nil {
			t.Skip("no /proc/self/io here")
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "syscr: "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Skip("no syscr in /proc/self/io")
		return 0
	}
	peer := func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			time.Sleep(time.Millisecond) // the answer comes after the client's first read
			io.WriteString(c, "answer")
		}
	}
	const n = 100
	exchange := func(useLast bool) int {
		dc := sendConnFor(t, sendPeer(t, peer), 5*time.Second)
		before := syscr()
		for range n {
			dc.last = useLast
			if _, err := dc.Write([]byte("req")); err != nil {
				t.Fatal(err)
			}
			readAnswer(t, dc)
		}
		return syscr() - before
	}
	plain, last := exchange(false), exchange(true)
	if last > plain-n/2 {
		t.Fatalf("%d exchanges made %d read calls with sendLast and %d without: want about %d fewer", n, last, plain, n)
	}
	t.Logf("%d exchanges: %d read calls with sendLast, %d without", n, last, plain)
}
