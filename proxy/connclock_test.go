package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

// The clock's rules, on a stepped clock: a bound is never cut short (it
// counts from the scan that first saw the phase), each phase has its own
// bound, the handler's phase has none, every change restarts the count,
// the first request's read phase runs from the accept, and a connection
// is cut once.
func TestConnClockBounds(t *testing.T) {
	const (
		read  = 10 * time.Second
		write = 30 * time.Second
		idle  = 60 * time.Second
	)
	type cut struct {
		c net.Conn
		p phase
	}
	conn := func() net.Conn { c, _ := net.Pipe(); return c }
	// open is a clock that records its cuts, with one connection accepted.
	open := func() (*connClock, *[]cut, net.Conn) {
		k := newConnClock(read, write, idle, nil)
		var cuts []cut
		k.cut = func(c net.Conn, p phase) { cuts = append(cuts, cut{c, p}) }
		c := conn()
		k.connState(c, fasthttp.StateNew)
		return k, &cuts, c
	}
	s := func(d float64) time.Duration { return time.Duration(d * float64(time.Second)) }
	// cutAtBound scans k when the phase c is in begins (from), 10 ms short
	// of its bound after that, and at the bound: c is cut at the last scan,
	// once, for phase p, and not before.
	cutAtBound := func(t *testing.T, k *connClock, cuts *[]cut, c net.Conn, from, bound time.Duration, p phase) {
		t.Helper()
		n := len(*cuts)
		k.scan(from)
		k.scan(from + bound - 10*time.Millisecond)
		if len(*cuts) != n {
			t.Fatalf("cut before its %v bound: %v", bound, *cuts)
		}
		k.scan(from + bound)
		if len(*cuts) != n+1 || (*cuts)[n] != (cut{c, p}) {
			t.Fatalf("cuts = %v; want one %s cut at its %v bound", *cuts, phaseNames[p], bound)
		}
	}

	t.Run("a silent new connection: read bound from the first scan", func(t *testing.T) {
		k, cuts, c := open()
		cutAtBound(t, k, cuts, c, s(1), read, phRead) // first seen at 1 s: the bound counts from there, not from before
		k.scan(s(50))
		if len(*cuts) != 1 {
			t.Fatalf("cut again: %v", *cuts)
		}
	})
	t.Run("the first request's first byte does not restart its read bound", func(t *testing.T) {
		k, cuts, c := open()
		k.scan(0)
		k.connState(c, fasthttp.StateActive)
		k.scan(s(10))
		if len(*cuts) != 1 {
			t.Fatalf("cuts = %v; a head still unread 10 s after the accept must be cut", *cuts)
		}
	})
	t.Run("the handler is not bounded; the answer and the idle wait are", func(t *testing.T) {
		k, cuts, c := open()
		r := k.rec(c)
		r.set(phBusy)
		k.scan(0)
		k.scan(s(1000))
		if len(*cuts) != 0 {
			t.Fatalf("a running handler was cut: %v", *cuts)
		}
		r.set(phWrite)
		cutAtBound(t, k, cuts, c, s(1000), write, phWrite)
		k.connState(c, fasthttp.StateIdle)
		cutAtBound(t, k, cuts, c, s(2000), idle, phIdle)
	})
	t.Run("every change restarts the count, even back to the same phase", func(t *testing.T) {
		k, cuts, c := open()
		r := k.rec(c)
		k.scan(0)
		for i := 1; i <= 5; i++ { // a body read 8 s a piece: each read is under the bound
			r.set(phBusy)
			r.set(phRead)
			k.scan(s(8 * float64(i)))
		}
		if len(*cuts) != 0 {
			t.Fatalf("a body read piece by piece within the bound was cut: %v", *cuts)
		}
	})
	t.Run("closed and hijacked connections leave the clock", func(t *testing.T) {
		k, cuts, a := open()
		b := conn()
		k.connState(b, fasthttp.StateNew)
		k.scan(0)
		k.connState(a, fasthttp.StateClosed)
		k.connState(b, fasthttp.StateHijacked)
		k.scan(s(100))
		if len(*cuts) != 0 || k.rec(a) != nil || k.rec(b) != nil {
			t.Fatalf("cuts %v, records %v %v; want none", *cuts, k.rec(a), k.rec(b))
		}
	})
	t.Run("the tick is a twentieth of the shortest bound, within 5-500 ms", func(t *testing.T) {
		for _, c := range []struct{ r, w, i, want time.Duration }{
			{10 * time.Second, 30 * time.Second, 60 * time.Second, 500 * time.Millisecond},
			{300 * time.Millisecond, time.Minute, time.Second, 15 * time.Millisecond},
			{time.Millisecond, 0, 0, 5 * time.Millisecond},
		} {
			if got := newConnClock(c.r, c.w, c.i, nil).tick; got != c.want {
				t.Errorf("tick for %v/%v/%v = %v, want %v", c.r, c.w, c.i, got, c.want)
			}
		}
	})
	var nilRec *connRec
	nilRec.set(phWrite) // a ctx without a connection (a test's) has no record: no panic
}

// The timeouts on a real server: each stalled phase is cut, never before
// its bound, and counted; a slow handler and a streamed answer with long
// gaps between its pieces are not.
func TestClientTimeouts(t *testing.T) {
	const bound = 300 * time.Millisecond
	const big = 64 << 20 // more than loopback's socket buffers hold
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow": // the handler's wait: longer than every bound
			time.Sleep(4 * bound)
			io.WriteString(w, "slow")
		case "/gaps": // a streamed answer with pauses longer than WriteTimeout
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(2 * bound)
			}
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(big))
			buf := make([]byte, 64<<10)
			for range big / len(buf) {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL, options: func(o *Options) {
		o.ReadTimeout, o.WriteTimeout, o.IdleTimeout = bound, bound, 2*bound
		o.MaxResponseBytes = 2 * big
	}})
	cuts := func(p phase) float64 { return testutil.ToFloat64(e.srv.clock.timeouts[p]) }
	// closedAfter waits (at most 5 s) for the server to close c, reading
	// and dropping what it sends, and returns how long that took.
	closedAfter := func(t *testing.T, c net.Conn, from time.Time) time.Duration {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server kept the connection open 5 s")
		}
		return time.Since(from)
	}
	get := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n\r\n"
	}

	t.Run("a connection that sends nothing", func(t *testing.T) {
		before := cuts(phRead)
		t0 := time.Now()
		c := dialFrom(t, e.addr, "")
		if d := closedAfter(t, c, t0); d < bound {
			t.Fatalf("closed after %v, before ReadTimeout (%v)", d, bound)
		}
		if cuts(phRead) != before+1 {
			t.Errorf("read cuts %v → %v; want one more", before, cuts(phRead))
		}
	})
	t.Run("a head trickled a byte at a time", func(t *testing.T) {
		c := dialFrom(t, e.addr, "")
		t0 := time.Now()
		head := get("/") + "X-Pad: " + strings.Repeat("a", 200) + "\r\n\r\n"
		sent := 0
		for ; sent < len(head); sent++ { // a byte every 20 ms: each within the bound, the head not
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte{head[sent]}); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			if time.Since(t0) > 5*time.Second {
				t.Fatal("the server took a trickled head for 5 s")
			}
		}
		if sent == len(head) {
			t.Fatalf("the whole trickled head (%d bytes over %v) was taken", sent, time.Since(t0))
		}
		if d := closedAfter(t, c, t0); d < bound {
			t.Fatalf("closed after %v, before ReadTimeout (%v)", d, bound)
		}
	})
	t.Run("a kept-alive connection is closed when idle, not before", func(t *testing.T) {
		c := dialFrom(t, e.addr, "")
		roundTrip := func() {
			t.Helper()
			if res, _ := exchange(t, c); res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
		}
		before := cuts(phIdle)
		for range 4 { // requests a third of IdleTimeout apart: 4 of them outlast one IdleTimeout
			roundTrip()
			time.Sleep(2 * bound / 3)
		}
		roundTrip()
		t0 := time.Now()
		if d := closedAfter(t, c, t0); d < 2*bound {
			t.Fatalf("an idle connection closed after %v, before IdleTimeout (%v)", d, 2*bound)
		}
		if cuts(phIdle) != before+1 {
			t.Errorf("idle cuts %v → %v; want one more", before, cuts(phIdle))
		}
	})
	t.Run("a client that stops reading its answer", func(t *testing.T) {
		c := dialFrom(t, e.addr, "")
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		before := cuts(phWrite)
		if _, err := io.WriteString(c, get("/big")); err != nil {
			t.Fatal(err)
		}
		// It reads nothing. The server's side must be cut and closed: the
		// client itself may not see the end for a while (the kernel goes
		// on sending what the closed socket had queued).
		writing := func() int {
			n := 0
			e.srv.clock.conns.Range(func(_, v any) bool {
				if v.(*connRec).phase() == phWrite {
					n++
				}
				return true
			})
			return n
		}
		eventually(t, "the stalled answer cut and its connection closed", func() bool {
			return cuts(phWrite) == before+1 && writing() == 0
		})
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := io.Copy(io.Discard, c); n >= big {
			t.Fatalf("the stalled client got all %d bytes; want the answer cut", n)
		}
	})
	t.Run("a slow handler and a stream with long gaps are not cut", func(t *testing.T) {
		r0, w0 := cuts(phRead), cuts(phWrite)
		for _, c := range []struct{ path, want string }{
			{"/slow", "slow"},
			{"/gaps", "data: 0\n\ndata: 1\n\ndata: 2\n\n"},
		} {
			r := e.do("GET", "t1.test", c.path, "alice-key", nil)
			if r.status != 200 || string(r.body) != c.want {
				t.Errorf("GET %s = %d %q; want 200 %q", c.path, r.status, r.body, c.want)
			}
		}
		if cuts(phRead) != r0 || cuts(phWrite) != w0 {
			t.Errorf("read cuts %v → %v, write cuts %v → %v; want none", r0, cuts(phRead), w0, cuts(phWrite))
		}
	})
}

// BenchmarkConnClockRequest is the clock's cost on one request's path:
// the ConnState hook at the first byte and at the end, handle's lookup and
// its two phase changes, with 10,000 connections open; beside it, what it
// replaced: fasthttp's three deadline changes a request (idle, read,
// write), on loopback TCP connections; and a scan of the 10,000.
func BenchmarkConnClockRequest(b *testing.B) {
	b.Run("fasthttp-deadlines", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		var cs []net.Conn
		for range 32 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cs = append(cs, c)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c := cs[i%len(cs)]
				i++
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			}
		})
	})
	k := newConnClock(10*time.Second, 30*time.Second, time.Minute, nil)
	conns := make([]net.Conn, 10000)
	for i := range conns {
		conns[i] = &net.TCPConn{} // a distinct key; the clock never touches it here
		k.connState(conns[i], fasthttp.StateNew)
	}
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c := conns[i%len(conns)]
				i++
				k.connState(c, fasthttp.StateActive)
				r := k.rec(c)
				r.set(phBusy)
				r.set(phWrite)
				k.connState(c, fasthttp.StateIdle)
			}
		})
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			k.scan(time.Duration(i))
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(conns)), "ns/conn")
	})
}
