package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/proxy"
)

// tlsOptions translates the config's tls blocks for proxy.LoadCerts.
func tlsOptions(cfg *configs.File, log *slog.Logger) proxy.TLSOptions {
	o := proxy.TLSOptions{
		CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, MinVersion: tls.VersionTLS12,
		Logger: log.With("component", "tls"),
	}
	if cfg.TLS.MinVersion == "1.3" {
		o.MinVersion = tls.VersionTLS13
	}
	for _, t := range cfg.Tenants {
		if t.TLS != nil {
			o.Tenants = append(o.Tenants, proxy.TenantCert{Tenant: t.Name, Hosts: t.Hosts, CertFile: t.TLS.CertFile, KeyFile: t.TLS.KeyFile})
		}
	}
	return o
}

// openCerts loads the certificates when the config has a tls block; nil
// means plain HTTP.
func openCerts(cfg *configs.File, log *slog.Logger) (*proxy.Certs, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	return proxy.LoadCerts(tlsOptions(cfg, log))
}

// reloadCerts re-reads the certificates named by the config at path. A bad
// certificate is refused and the current ones keep serving. Adding or
// removing the tls block, or changing redirect_listen, needs a restart.
func reloadCerts(path string, certs *proxy.Certs, log *slog.Logger) {
	cfg, err := loadConfig(path)
	if err != nil {
		log.Error("tls reload refused: config invalid; the current certificates keep serving", "err", err)
		return
	}
	switch {
	case certs == nil && cfg.TLS == nil:
		return
	case certs == nil:
		log.Warn("tls was added to the config: restart safeclose to serve TLS")
		return
	case cfg.TLS == nil:
		log.Warn("tls was removed from the config: restart safeclose to serve plain HTTP; the current certificates keep serving")
		return
	}
	if err := certs.Reload(tlsOptions(cfg, log)); err != nil {
		log.Error("tls reload refused; the current certificates keep serving", "err", err)
		return
	}
	log.Info("tls certificates reloaded")
}

// tlsFingerprint summarises the tls settings and the bytes of every
// certificate and key file the config at path names, so a renewed
// certificate triggers a reload of the certificates alone.
func tlsFingerprint(path string) string {
	if path == "" {
		return ""
	}
	cfg, err := configs.Load(path)
	if err != nil || cfg.TLS == nil {
		return ""
	}
	h := sha256.New()
	files := []string{cfg.TLS.CertFile, cfg.TLS.KeyFile}
	fmt.Fprintf(h, "%+v\n", *cfg.TLS)
	for _, t := range cfg.Tenants {
		if t.TLS != nil {
			fmt.Fprintf(h, "%s %q\n", t.Name, t.Hosts)
			files = append(files, t.TLS.CertFile, t.TLS.KeyFile)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "%s unreadable\n", f)
			continue
		}
		s := sha256.Sum256(b)
		fmt.Fprintf(h, "%s %x\n", f, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startRedirect serves tls.redirect_listen: 308 to https on the public
// listener's port (see proxy.Server.RedirectHandler).
func startRedirect(cfg *configs.File, srv *proxy.Server, publicAddr net.Addr) (*http.Server, net.Listener, error) {
	if cfg.TLS == nil || cfg.TLS.RedirectListen == "" {
		return nil, nil, nil
	}
	_, port, _ := net.SplitHostPort(publicAddr.String())
	ln, err := net.Listen("tcp", cfg.TLS.RedirectListen)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.redirect_listen: %w", err)
	}
	if pp := cfg.ProxyProtocol; pp != nil { // the balancer sends port 80 here
		ln = proxy.ProxyProtocolListener(ln, pp.Prefixes(), 10*time.Second)
	}
	hs := &http.Server{
		Handler: srv.RedirectHandler(port), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
	}
	go func() { _ = hs.Serve(ln) }()
	return hs, ln, nil
}

// accessLogWriter is where the access log's lines go: the log's own
// stream, or nil when access_log is off or log_level is above info (the
// lines are "level":"INFO" records, as before).
func accessLogWriter(cfg *configs.File, w io.Writer) io.Writer {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.LogLevel))
	if !cfg.AccessLog || l > slog.LevelInfo {
		return nil
	}
	return w
}

// lockedWriter serialises Write calls: the log and the access log's writer
// share one stream and each Write is one or more whole lines.
type lockedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	errs atomic.Uint64 // writes that failed (safeclose_log_write_errors_total)
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(p)
	if err != nil {
		l.errs.Add(1)
	}
	return n, err
}
