package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSOptions describe the public listener's certificates. See RATIONALE.md
// "Why TLS ends in Safeclose, over HTTP/1.1 only".
type TLSOptions struct {
	CertFile, KeyFile string // the default certificate (PEM), served when no tenant's host matches; required
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13; zero means TLS 1.2.
	MinVersion uint16
	Tenants    []TenantCert
	// Logger gets warnings: a certificate that does not cover a host, and
	// one close to its end (see Certs); nil means discard.
	Logger *slog.Logger
	Now    func() time.Time // nil means time.Now
}

// TenantCert is a tenant's own certificate, chosen by SNI among Hosts
// (exact names and "*.example.com" wildcards, case-insensitive).
type TenantCert struct {
	Tenant            string
	Hosts             []string
	CertFile, KeyFile string
}

// Certs is the public listener's certificate set. Reload swaps the whole
// set atomically: handshakes that already started keep the set they read,
// open connections are not touched. Safe for concurrent use.
//
// A certificate close to its end (within 14 days, or a third of its
// lifetime if that is shorter: its renewal has failed) is logged as a
// warning, "tls: certificate expires soon", naming the file; one past its
// end as an error. This is checked at load and reload, then at most once
// an hour, on a handshake.
type Certs struct {
	cur       atomic.Pointer[certSet]
	nextCheck atomic.Int64 // unix seconds of the next expiry check
}

// expiryCheckEvery is how often handshakes check for expiring certificates.
const expiryCheckEvery = time.Hour

type certSet struct {
	clock    func() time.Time
	log      *slog.Logger
	files    []certFile // every pair loaded, the default first
	hosts    []certHost
	cfg      *tls.Config
	def      *tls.Certificate
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
}

// certFile is a loaded pair, for the expiry check.
type certFile struct {
	tenant, file string // tenant is "(default)" for the default certificate
	leaf         *x509.Certificate
}

// certHost is a tenant host with its own certificate; name is what a
// client sends as SNI for it ("x.example.com" for "*.example.com").
type certHost struct {
	tenant, host, name, certFile string
}

// LoadCerts reads and checks every certificate. A file that cannot be read,
// a chain that does not parse, a key that does not match its certificate
// or an expired leaf is an error naming the file and the reason.
func LoadCerts(o TLSOptions) (*Certs, error) {
	set, err := buildCertSet(o)
	if err != nil {
		return nil, err
	}
	c := &Certs{}
	c.cur.Store(set)
	c.checkExpiry(set)
	return c, nil
}

// Reload loads o and swaps it in; on error the current set keeps serving.
// Besides LoadCerts' checks, a tenant certificate that does not cover a
// host the current, unexpired certificate for it covers is refused: it
// is another name's certificate, written by mistake, and clients would
// refuse it.
func (c *Certs) Reload(o TLSOptions) error {
	set, err := buildCertSet(o)
	if err != nil {
		return err
	}
	if err := set.keepsCoverage(c.cur.Load()); err != nil {
		return err
	}
	c.cur.Store(set)
	c.checkExpiry(set)
	return nil
}

// checkExpiry logs s's certificates that are close to or past their end,
// and schedules the next check.
func (c *Certs) checkExpiry(s *certSet) {
	now := s.clock()
	c.nextCheck.Store(now.Add(expiryCheckEvery).Unix())
	s.logExpiry(now)
}

func (s *certSet) logExpiry(now time.Time) {
	for _, f := range s.files {
		left := f.leaf.NotAfter.Sub(now)
		warnBefore := min(14*24*time.Hour, f.leaf.NotAfter.Sub(f.leaf.NotBefore)/3)
		notAfter := f.leaf.NotAfter.UTC().Format(time.RFC3339)
		switch {
		case left <= 0:
			s.log.Error("tls: certificate has expired; clients refuse it: renew it",
				"tenant", f.tenant, "cert_file", f.file, "not_after", notAfter)
		case left < warnBefore:
			s.log.Warn("tls: certificate expires soon; its renewal may have failed",
				"tenant", f.tenant, "cert_file", f.file, "not_after", notAfter, "days_left", int(left.Hours()/24))
		}
	}
}

// maybeCheckExpiry logs expiring certificates when the last check is an
// hour old; one handshake of those arriving then does.
func (c *Certs) maybeCheckExpiry(s *certSet) {
	now := s.clock()
	next := c.nextCheck.Load()
	if now.Unix() < next || !c.nextCheck.CompareAndSwap(next, now.Add(expiryCheckEvery).Unix()) {
		return
	}
	s.logExpiry(now)
}

// Listener wraps ln so that it terminates TLS with the current set.
func (c *Certs) Listener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, c.Config())
}

// Config is the tls.Config of the public listener: each handshake uses the
// set current when the ClientHello arrives.
func (c *Certs) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s := c.cur.Load()
			c.maybeCheckExpiry(s)
			return s.cfg, nil
		},
	}
}

func buildCertSet(o TLSOptions) (*certSet, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("proxy: tls: the default certificate needs cert_file and key_file")
	}
	def, err := loadPair(o.CertFile, o.KeyFile, now())
	if err != nil {
		return nil, fmt.Errorf("proxy: tls: default certificate: %w", err)
	}
	s := &certSet{clock: now, log: log, def: def, exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	s.files = append(s.files, certFile{tenant: "(default)", file: o.CertFile, leaf: def.Leaf})
	for _, tc := range o.Tenants {
		crt, err := loadPair(tc.CertFile, tc.KeyFile, now())
		if err != nil {
			return nil, fmt.Errorf("proxy: tls: tenant %q: %w", tc.Tenant, err)
		}
		s.files = append(s.files, certFile{tenant: tc.Tenant, file: tc.CertFile, leaf: crt.Leaf})
		for _, h := range tc.Hosts {
			h = strings.ToLower(h)
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				s.wildcard[rest] = crt
			} else {
				s.exact[h] = crt
			}
			name := strings.Replace(h, "*", "x", 1)
			if net.ParseIP(h) == nil { // clients send no IP address as SNI
				s.hosts = append(s.hosts, certHost{tenant: tc.Tenant, host: h, name: name, certFile: tc.CertFile})
			}
			if err := crt.Leaf.VerifyHostname(name); err != nil {
				log.Warn("tls: certificate does not cover a tenant host; clients will refuse it",
					"tenant", tc.Tenant, "host", h, "cert_file", tc.CertFile)
			}
		}
	}
	minV := o.MinVersion
	if minV < tls.VersionTLS12 {
		minV = tls.VersionTLS12
	}
	// Go's defaults for cipher suites and curves are the modern ones; they
	// are deliberately not pinned here.
	s.cfg = &tls.Config{
		MinVersion:     minV,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: s.certificate,
	}
	return s, nil
}

// keepsCoverage returns an error for the first tenant host that s's
// certificate does not cover and old's unexpired one does.
func (s *certSet) keepsCoverage(old *certSet) error {
	now := s.clock()
	for _, h := range s.hosts {
		hello := &tls.ClientHelloInfo{ServerName: h.name}
		crt, _ := s.certificate(hello)
		if crt.Leaf.VerifyHostname(h.name) == nil {
			continue
		}
		was, _ := old.certificate(hello)
		if now.Before(was.Leaf.NotAfter) && was.Leaf.VerifyHostname(h.name) == nil {
			return fmt.Errorf("proxy: tls: tenant %q: %s does not cover host %s, which the certificate served now does (another name's certificate?)",
				h.tenant, h.certFile, h.host)
		}
	}
	return nil
}

// loadPair reads a PEM chain and key; errors name the file and the reason.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	crt, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", certFile, keyFile, err)
	}
	// X509KeyPair stops at the first block it cannot decode: a chain
	// read while it is being written keeps its leaf, which matches the
	// key, and loses the intermediates clients need.
	if incompletePEM(certPEM) {
		return nil, fmt.Errorf("%s: a PEM block after the leaf is incomplete (file read while being written?)", certFile)
	}
	if crt.Leaf == nil {
		if crt.Leaf, err = x509.ParseCertificate(crt.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", certFile, err)
		}
	}
	if now.After(crt.Leaf.NotAfter) {
		return nil, fmt.Errorf("%s: certificate expired at %s", certFile, crt.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &crt, nil
}

// incompletePEM reports whether b has a "-----BEGIN" after its last
// block that decodes: a block cut short or malformed.
func incompletePEM(b []byte) bool {
	for {
		blk, rest := pem.Decode(b)
		if blk == nil {
			return strings.Contains(string(b), "-----BEGIN")
		}
		b = rest
	}
}

// certificate picks by SNI: an exact tenant host, then a "*." tenant host
// one label up, then the default (also for clients that send no SNI).
func (s *certSet) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name == "" {
		return s.def, nil
	}
	if c, ok := s.exact[name]; ok {
		return c, nil
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c, ok := s.wildcard[rest]; ok {
			return c, nil
		}
	}
	return s.def, nil
}

// certExpiryDesc is the gauge Certs exports: each loaded certificate's end.
var certExpiryDesc = prometheus.NewDesc("safeclose_tls_certificate_not_after_seconds",
	"When each loaded TLS certificate expires (Unix seconds): alert on it minus time() falling below the renewal margin.",
	[]string{"tenant", "cert_file"}, nil)

// Describe implements prometheus.Collector.
func (c *Certs) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Collect implements prometheus.Collector: the certificates serving now.
func (c *Certs) Collect(ch chan<- prometheus.Metric) {
	s := c.cur.Load()
	if s == nil {
		return
	}
	for _, f := range s.files {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue,
			float64(f.leaf.NotAfter.Unix()), f.tenant, f.file)
	}
}
