package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// peerUpstream answers with the X-Forwarded-For and Forwarded it got.
func peerUpstream(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("Forwarded"))
	}))
	t.Cleanup(up.Close)
	return up, &hits
}

// behindBalancer starts a proxy whose listener trusts PROXY headers from
// 127.0.0.1 only; tls, when set, ends TLS after the header.
func behindBalancer(t *testing.T, upstream string, certs *Certs) *testEnv {
	from := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	return startEnv(t, envConfig{upstream: upstream, wrapLn: func(ln net.Listener) net.Listener {
		pl := ProxyProtocolListener(ln, from, 2*time.Second)
		if certs != nil {
			return certs.Listener(pl)
		}
		return pl
	}})
}

// sendRequest writes a request for t1 (alice) on c and returns the status
// and body of the answer.
func sendRequest(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\nConnection: close\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Behind a layer-4 balancer (Safeclose ends TLS, so the balancer cannot
// set X-Forwarded-For) the PROXY header's client address is the peer: the
// upstream sees it in X-Forwarded-For and Forwarded, v1 and v2 alike.
func TestProxyProtocolClientAddressReachesUpstream(t *testing.T) {
	t.Parallel()
	up, _ := peerUpstream(t)
	e := behindBalancer(t, up.URL, nil)
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 40000}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 443}
	for _, v := range []byte{1, 2} {
		c := dialFrom(t, e.addr, "127.0.0.1")
		if _, err := proxyproto.HeaderProxyFromAddrs(v, src, dst).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		st, body := sendRequest(t, c)
		if st != 200 || body != `203.0.113.7|for=203.0.113.7;host=t1.test;proto=http` {
			t.Errorf("PROXY v%d: %d %q; want the header's client address upstream", v, st, body)
		}
	}
}

// A balancer's connection without the header is closed unanswered and
// reaches nothing; a direct client (not a trusted balancer) is served as
// itself, and a PROXY header it sends is a malformed request, never an
// address it could claim.
func TestProxyProtocolIsTrustedOnlyFromTheBalancer(t *testing.T) {
	t.Parallel()
	up, hits := peerUpstream(t)
	e := behindBalancer(t, up.URL, nil)

	c := dialFrom(t, e.addr, "127.0.0.1")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\n\r\n")
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("a balancer connection without a PROXY header was answered: %q", b)
	}

	forged := dialFrom(t, e.addr, "127.0.0.2")
	io.WriteString(forged, "PROXY TCP4 198.51.100.9 192.0.2.1 40000 443\r\n")
	if st, body := sendRequest(t, forged); st != 400 || strings.Contains(body, "198.51.100.9") {
		t.Errorf("a PROXY header from a direct client: %d %q; want 400", st, body)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the upstream got %d requests, want none", n)
	}

	if st, body := sendRequest(t, dialFrom(t, e.addr, "127.0.0.2")); st != 200 || !strings.HasPrefix(body, "127.0.0.2|") {
		t.Errorf("a direct client: %d %q; want 200 as 127.0.0.2", st, body)
	}
}

// TLS ends after the PROXY header: the balancer forwards the client's TLS
// bytes untouched behind it.
func TestProxyProtocolThenTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	cert, key := ca.leaf("t1", time.Now().Add(day), "t1.test")
	certs, err := LoadCerts(TLSOptions{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := peerUpstream(t)
	e := behindBalancer(t, up.URL, certs)
	raw := dialFrom(t, e.addr, "127.0.0.1")
	io.WriteString(raw, "PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n")
	c := tls.Client(raw, &tls.Config{ServerName: "t1.test", RootCAs: ca.pool})
	if st, body := sendRequest(t, c); st != 200 || body != `2001:db8::7|for="[2001:db8::7]";host=t1.test;proto=https` {
		t.Errorf("PROXY then TLS: %d %q; want the header's client address upstream", st, body)
	}
}

// The access log names the client the PROXY header gave, not the balancer.
func TestProxyProtocolClientInAccessLog(t *testing.T) {
	t.Parallel()
	up, _ := peerUpstream(t)
	var buf lockedBuffer
	from := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	e := startEnv(t, envConfig{upstream: up.URL, optsFn: func(o *Options) { o.AccessLog = &buf },
		wrapLn: func(ln net.Listener) net.Listener { return ProxyProtocolListener(ln, from, 2*time.Second) }})
	c := dialFrom(t, e.addr, "127.0.0.1")
	io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n")
	if st, _ := sendRequest(t, c); st != 200 {
		t.Fatalf("status %d", st)
	}
	e.srv.access.sync()
	if lines := buf.lines(t); len(lines) != 1 || lines[0]["client"] != "203.0.113.7" {
		t.Fatalf("access log %v; want one line with client 203.0.113.7", lines)
	}
}
