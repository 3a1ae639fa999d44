package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyProtocolListener wraps ln for Safeclose behind a layer-4 load
// balancer (AWS NLB, GCP's TCP proxy, HAProxy in TCP mode). Safeclose ends
// TLS itself, so the balancer in front cannot add X-Forwarded-For; it
// prepends a PROXY protocol header (v1 or v2) with the client's address
// instead. A connection from an address in from must begin with one (a
// connection without it is closed at its first read, and the header must
// arrive within headerTimeout); the client address it names is then the
// connection's peer everywhere: X-Forwarded-For and Forwarded, a plugin's
// source address, the access log's client. A connection from any other address is a
// direct client, its bytes read as HTTP from the first (a PROXY header it
// sends is a malformed request, 400), so a client cannot claim an address.
//
// The wrapped connection is not a *net.TCPConn, so a plain-HTTP response
// over fasthttp's 4 KiB write buffer costs a write per piece instead of one
// writev on connections from the balancer (direct ones are not wrapped).
func ProxyProtocolListener(ln net.Listener, from []netip.Prefix, headerTimeout time.Duration) net.Listener {
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: headerTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if a, ok := o.Upstream.(*net.TCPAddr); ok {
				ip := a.AddrPort().Addr().Unmap()
				for _, p := range from {
					if p.Contains(ip) {
						return proxyproto.REQUIRE, nil
					}
				}
			}
			return proxyproto.SKIP, nil // served unwrapped, header not parsed
		},
	}
}

// acceptedAddr is the address c was accepted from, without reading from
// it: a PROXY protocol connection's RemoteAddr waits for its header, which
// the accept loop must not do.
func acceptedAddr(c net.Conn) net.Addr {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		c = pc.Raw()
	}
	return c.RemoteAddr()
}
