package proxy

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// crossOrigin reports a request a browser sent on another origin's behalf,
// for Safeclose's own state-changing routes. Those answer no CORS
// preflight, so a legitimate cross-origin browser call cannot reach them
// anyway; what does reach them without one is a "simple" request (a form
// post, a text/plain fetch), which carries the session cookie whenever the
// tenant's cookie allows it: that is CSRF. The check is net/http's
// CrossOriginProtection: Sec-Fetch-Site when the browser sends it, else an
// Origin whose host is not the request's. A client that is not a browser
// sends neither and is unaffected.
//
// Over TLS an Origin must also be https: a page served over plain HTTP
// under the same host (one an attacker on the network path can inject) is
// another origin. Browsers that send Sec-Fetch-Site already say so; this
// covers those that send only Origin. Behind a balancer that ends TLS,
// Safeclose sees plain HTTP and cannot tell, so tls is false there.
func crossOrigin(h *fasthttp.RequestHeader, tls bool) bool {
	switch string(h.Peek("Sec-Fetch-Site")) {
	case "":
	case "same-origin", "none":
		return false
	default: // same-site, cross-site
		return true
	}
	o := h.Peek("Origin")
	if len(o) == 0 {
		return false
	}
	u, err := url.Parse(string(o))
	return err != nil || u.Host == "" || !bytes.EqualFold([]byte(u.Host), h.Host()) ||
		tls && !strings.EqualFold(u.Scheme, "https")
}
