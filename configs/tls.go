package configs

import (
	"fmt"
	"net"
	"strings"
)

// TLS terminates TLS on the public listener. Absent, the listener speaks
// plain HTTP.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain, leaf first: the default certificate
	KeyFile  string `yaml:"key_file"`  // PEM private key of the default certificate
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// RedirectListen, when set, is a plain-HTTP listener that answers every
	// request with 308 to the same URL on https.
	RedirectListen string `yaml:"redirect_listen"`
}

// TenantTLS is a tenant's own certificate, served when the client's SNI
// names one of the tenant's hosts (exact, or under a "*." host).
type TenantTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// badWildcard reports a host that has a '*' anywhere but as a whole first
// label ("*.example.com").
func badWildcard(h string) bool {
	if !strings.Contains(h, "*") {
		return false
	}
	rest, ok := strings.CutPrefix(h, "*.")
	return !ok || rest == "" || strings.Contains(rest, "*") || !strings.Contains(rest, ".")
}

// validateTLS checks the top-level and per-tenant tls blocks (no file
// access: certificates are loaded, and refused, at start and reload).
func (f *File) validateTLS(add func(string, string, ...any)) {
	if t := f.TLS; t != nil {
		if t.CertFile == "" {
			add("tls.cert_file", "required")
		}
		if t.KeyFile == "" {
			add("tls.key_file", "required")
		}
		switch t.MinVersion {
		case "", "1.2", "1.3":
		default:
			add("tls.min_version", `must be "1.2" or "1.3" (TLS 1.0 and 1.1 are not offered)`)
		}
		if t.RedirectListen != "" {
			if _, port, err := net.SplitHostPort(t.RedirectListen); err != nil {
				add("tls.redirect_listen", "must be host:port (%v)", err)
			} else if t.RedirectListen == f.Listen && port != "0" {
				add("tls.redirect_listen", "must differ from listen")
			}
		}
	}
	for i, tn := range f.Tenants {
		if tn.TLS == nil {
			continue
		}
		p := fmt.Sprintf("tenants[%d].tls", i)
		if f.TLS == nil {
			add(p, "needs the top-level tls block (its certificate is the default for other names)")
		}
		if tn.TLS.CertFile == "" {
			add(p+".cert_file", "required")
		}
		if tn.TLS.KeyFile == "" {
			add(p+".key_file", "required")
		}
	}
}
