package proxy

import (
	"net"
	"net/http"
	"strings"
)

// RedirectHandler answers every request on a plain-HTTP listener with 308
// Permanent Redirect to the same path and query on https, for hosts a
// tenant serves (other hosts get 404, so the listener is not an open
// redirector). The port: a Host without one (the client used port 80) is
// sent to https's default port; a Host with an explicit port is sent to
// httpsPort (the TLS listener's), omitted when it is "443".
func (s *Server) RedirectHandler(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil {
			host, port = r.Host, ""
		}
		if host == "" || strings.ContainsAny(host, "/\\@?#%") || s.table.Load().tenantFor([]byte(host)) == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"unknown_host","message":"no tenant serves this host"}}`))
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + host + "]"
		}
		if port != "" && httpsPort != "443" && httpsPort != "" {
			host += ":" + httpsPort
		}
		target := "https://" + host + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}
