package proxy

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawRequest is a request for t1 (alice) that a connection under the
// bounds answers 200.
const rawRequest = "GET /api/plaid/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-key\r\n\r\n"

// dialFrom opens a connection to addr from the loopback address local
// ("" for the default).
func dialFrom(t *testing.T, addr, local string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange writes rawRequest on c and reads one response.
func exchange(t *testing.T, c net.Conn) (*http.Response, []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, rawRequest); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, body
}

// waitOpen polls the open-connections gauge until it is want (bounded).
func waitOpen(t *testing.T, e *testEnv, want int64) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if e.srv.conns.open.Load() == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("open connections = %d, want %d", e.srv.conns.open.Load(), want)
}

// The third trust pass: a client holding connections open could take the
// process's memory. Over max_conns a connection gets a JSON 503 and is
// closed, whole even when its request was already sent; a connection that
// closes frees its place.
func TestMaxConnsRefusesOverTheBound(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{options: func(o *Options) { o.MaxConns = 3; o.IdleTimeout = time.Minute }})
	held := make([]net.Conn, 3)
	for i := range held {
		held[i] = dialFrom(t, e.addr, "")
		if res, _ := exchange(t, held[i]); res.StatusCode != 200 {
			t.Fatalf("connection %d under the bound: %d", i, res.StatusCode)
		}
	}
	over := dialFrom(t, e.addr, "")
	res, body := exchange(t, over)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !res.Close {
		t.Fatalf("over max_conns: %d Retry-After=%q close=%v; want 503, Retry-After, Connection: close", res.StatusCode, res.Header.Get("Retry-After"), res.Close)
	}
	var eb struct {
		Error struct{ Code, Message, Limit string }
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != "too_many_connections" || eb.Error.Limit != "max_conns" {
		t.Fatalf("refusal body %q (%v); want code too_many_connections, limit max_conns", body, err)
	}
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused connection after the answer: %v, want EOF", err)
	}
	// A client still sending a body when it is refused gets the answer
	// too, not a reset on its next write.
	up := dialFrom(t, e.addr, "")
	up.SetDeadline(time.Now().Add(5 * time.Second))
	body512 := strings.Repeat("x", 512<<10)
	_, err := io.WriteString(up, "POST /api/plaid/exchange HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-key\r\n"+
		"Content-Type: application/json\r\nContent-Length: 524288\r\n\r\n"+body512)
	if err != nil {
		t.Fatalf("writing a body to a refused connection: %v", err)
	}
	if res, err := http.ReadResponse(bufio.NewReader(up), nil); err != nil || res.StatusCode != 503 {
		t.Fatalf("refused while sending a body: %v %v; want 503", res, err)
	}
	if n := testutil.ToFloat64(e.srv.conns.refused.WithLabelValues(refusedMaxConns)); n != 2 {
		t.Errorf("refused{max_conns} = %v, want 2", n)
	}
	// The held connections still work, and one closing frees a place.
	if res, _ := exchange(t, held[0]); res.StatusCode != 200 {
		t.Fatalf("held connection after a refusal: %d", res.StatusCode)
	}
	held[1].Close()
	waitOpen(t, e, 2)
	if res, _ := exchange(t, dialFrom(t, e.addr, "")); res.StatusCode != 200 {
		t.Fatalf("after a held connection closed: %d, want 200", res.StatusCode)
	}
}

// max_conns_per_ip bounds one address (429) and leaves others their own.
func TestMaxConnsPerIPBoundsOneAddress(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{options: func(o *Options) { o.MaxConnsPerIP = 2; o.IdleTimeout = time.Minute }})
	for range 2 {
		if res, _ := exchange(t, dialFrom(t, e.addr, "127.0.0.1")); res.StatusCode != 200 {
			t.Fatalf("under the bound: %d", res.StatusCode)
		}
	}
	res, body := exchange(t, dialFrom(t, e.addr, "127.0.0.1"))
	if res.StatusCode != 429 || !strings.Contains(string(body), `"limit":"max_conns_per_ip"`) {
		t.Fatalf("third connection from one address: %d %s; want 429 max_conns_per_ip", res.StatusCode, body)
	}
	if res, _ := exchange(t, dialFrom(t, e.addr, "127.0.0.2")); res.StatusCode != 200 {
		t.Fatalf("another address: %d, want 200", res.StatusCode)
	}
	if n := testutil.ToFloat64(e.srv.conns.refused.WithLabelValues(refusedMaxConnsPerIP)); n != 1 {
		t.Errorf("refused{max_conns_per_ip} = %v, want 1", n)
	}
}

// Every way a connection ends gives its place back, or the bound would
// fill up for good: the client closing, the server closing an idle
// connection, a request it could not parse, Connection: close, and a
// connection refused itself.
func TestConnectionPlacesAreGivenBack(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{options: func(o *Options) { o.MaxConns = 2; o.MaxConnsPerIP = 2 }})
	for round := range 3 {
		a := dialFrom(t, e.addr, "")
		exchange(t, a)
		a.Close() // the client closes

		b := dialFrom(t, e.addr, "")
		b.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(b, "GARBAGE\r\n\r\n") // unparsable: 400, closed by the server
		io.Copy(io.Discard, b)

		c := dialFrom(t, e.addr, "")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, strings.Replace(rawRequest, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
		io.Copy(io.Discard, c)

		idle := dialFrom(t, e.addr, "") // closed by IdleTimeout (1 s in startEnv)
		exchange(t, idle)
		waitOpen(t, e, 0)

		x, y := dialFrom(t, e.addr, ""), dialFrom(t, e.addr, "")
		exchange(t, x)
		exchange(t, y)
		res, _ := exchange(t, dialFrom(t, e.addr, "")) // refused
		if res.StatusCode != 503 {
			t.Fatalf("round %d: over the bound: %d, want 503", round, res.StatusCode)
		}
		x.Close()
		y.Close()
		waitOpen(t, e, 0)
		e.srv.conns.mu.Lock()
		n := len(e.srv.conns.byIP)
		e.srv.conns.mu.Unlock()
		if n != 0 {
			t.Fatalf("round %d: %d addresses still counted with no connection open", round, n)
		}
	}
}

// A TLS connection over the bound is closed unanswered: answering would
// cost the handshake the bound is there to shed.
func TestMaxConnsClosesTLSUnanswered(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	cert, key := ca.leaf("t1", time.Now().Add(day), "t1.test", "127.0.0.1")
	certs, err := LoadCerts(TLSOptions{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envConfig{wrapLn: certs.Listener, options: func(o *Options) { o.MaxConns = 1; o.IdleTimeout = time.Minute }})
	cfg := &tls.Config{ServerName: "t1.test", RootCAs: ca.pool}
	held, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatalf("under the bound: %v", err)
	}
	defer held.Close()
	waitOpen(t, e, 1)
	d := &net.Dialer{Timeout: 5 * time.Second, Deadline: time.Now().Add(5 * time.Second)}
	if c, err := tls.DialWithDialer(d, "tcp", e.addr, cfg); err == nil {
		c.Close()
		t.Fatal("TLS handshake over the bound succeeded; want the connection closed")
	}
	if n := testutil.ToFloat64(e.srv.conns.refused.WithLabelValues(refusedMaxConns)); n != 1 {
		t.Errorf("refused{max_conns} = %v, want 1", n)
	}
}
