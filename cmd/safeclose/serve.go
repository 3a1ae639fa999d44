package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/proxy"
	"github.com/safeclose/safeclose/store"
)

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func loadConfig(path string) (*configs.File, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	// Validate compares paths lexically; here both are made absolute.
	if s := string(cfg.Keys); strings.HasPrefix(s, "file:") {
		d, err1 := filepath.Abs(cfg.DataDir)
		k, err2 := filepath.Abs(s[5:])
		if err1 == nil && err2 == nil && configs.PathWithin(d, k) {
			return nil, fmt.Errorf("invalid config:\nkeys: the keyring file is inside data_dir (%s): keep keys apart from the data they protect", cfg.DataDir)
		}
	}
	return cfg, nil
}

// openKeyring resolves the configured keyring. A missing or malformed keyring
// is not fatal: the proxy runs, and exchanges answer persisted:false with a
// hint, which is what an admin needs to see.
func openKeyring(cfg *configs.File, log *slog.Logger) *store.Keyring {
	kr, err := readKeyring(cfg)
	switch {
	case cfg.Keys == "":
		log.Warn("no keyring configured (keys:): access tokens cannot be stored; exchanges will answer persisted:false")
	case errors.Is(err, errKeyringUnavailable):
		log.Warn("keyring unavailable: access tokens cannot be stored; exchanges will answer persisted:false", "err", err)
	case err != nil:
		log.Error("keyring is malformed: access tokens cannot be stored", "err", err)
	case devKey(kr):
		log.Warn("!!! USING THE DEVELOPMENT SEALING KEY: tokens are NOT protected. Never use it with real Plaid credentials !!!", "key_id", kr.PrimaryID())
	}
	return kr
}

// errKeyringUnavailable: the keys: reference could not be resolved (an
// unset variable, an unreadable file).
var errKeyringUnavailable = errors.New("keyring unavailable")

// readKeyring resolves and parses the configured keyring: nil and no error
// when none is configured. Errors never hold key material.
func readKeyring(cfg *configs.File) (*store.Keyring, error) {
	if cfg.Keys == "" {
		return nil, nil
	}
	sec, err := cfg.Keys.Resolve()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKeyringUnavailable, err)
	}
	return store.ParseKeyring(sec.Reveal())
}

// devKey reports a keyring whose primary is a development key.
func devKey(kr *store.Keyring) bool { return kr != nil && strings.HasPrefix(kr.PrimaryID(), "dev") }

type serveOpts struct {
	config string
	watch  time.Duration
}

func serveFlagSet(o *serveOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "config file (default: the embedded dev config, configs/safeclose.yaml)")
	fs.DurationVar(&o.watch, "watch", 2*time.Second, "reload when the config file or a plugin file changes, checked this often (0: only on SIGHUP)")
	return fs
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP is caught from the start: Go's default for it is to exit, and
	// start-up (store, plugin compilation) takes long enough for a reload
	// sent right after a start to land in it. One that does is kept and
	// reloads once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A log whose reader went away (a shipper restarted, `serve | tee` with
	// tee killed) must not take the proxy with it: Go ends a program on
	// SIGPIPE from its standard output or error. Ignored, such a write
	// fails with EPIPE; the lines lost are counted
	// (safeclose_log_write_errors_total).
	signal.Ignore(syscall.SIGPIPE)
	var o serveOpts
	if err := parseFlags(serveFlagSet(&o), args, stdout); err != nil {
		return err
	}
	cfgPath, watchEvery := &o.config, &o.watch
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	secrets := noteSecrets(cfg)      // what keys and store.dsn name now: read once, below
	logw := &lockedWriter{w: stderr} // shared by the log and the access log: whole lines, never interleaved
	log := newLogger(logw, cfg.LogLevel)
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w)
	}
	certs, err := openCerts(cfg, log) // a bad certificate is refused before anything starts
	if err != nil {
		return err
	}

	db, err := openStore(cfg, log)
	if err != nil {
		return fmt.Errorf("open store %s: %w", storeName(cfg), err)
	}
	defer db.Close()
	go sweep(ctx, db, log)

	var emuAddr string
	if cfg.Emulator.Enabled {
		stop, addr, err := startEmulator(cfg.Emulator, log)
		if err != nil {
			return err
		}
		defer stop()
		emuAddr = addr
	}

	// Plugins keep their key/value data in the store: durable, and shared
	// by every replica on PostgreSQL.
	engine, err := hostabi.NewEngine(ctx, hostabi.Options{CacheDir: cfg.PluginCache, Logger: log.With("component", "hostabi"), KV: db})
	if err != nil {
		return fmt.Errorf("wasm engine: %w", err)
	}
	defer engine.Close(context.Background())

	b := &builder{engine: engine, log: log, emuAddr: emuAddr}
	set := b.tenants(ctx, cfg)
	if err := startSet(set, log); err != nil {
		return err
	}
	tenants := proxyTenants(set)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerServeMetrics(reg, certs, logw)
	srv, err := proxy.New(proxy.Options{
		Tenants:           tenants,
		Store:             db,
		Logger:            log,
		MaxBodyBytes:      cfg.Limits.MaxBodyBytes,
		ReadTimeout:       cfg.Limits.ReadTimeout.Std(),
		WriteTimeout:      cfg.Limits.WriteTimeout.Std(),
		IdleTimeout:       cfg.Limits.IdleTimeout.Std(),
		PlaidTimeout:      cfg.Limits.PlaidTimeout.Std(),
		MaxConns:          cfg.Limits.MaxConns,
		MaxConnsPerIP:     cfg.Limits.MaxConnsPerIP,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		PlaidCallsPerUser: cfg.Limits.PlaidCallsPerUser,
		Webhooks:          webhookOptions(cfg),
		Registry:          reg,

		AccessLog:      accessLogWriter(cfg, logw),
		TrustRequestID: cfg.TrustRequestID,
		AdminPprof:     cfg.AdminPprof,
		// Issue 13: what passes through the reverse proxy.
		MaxResponseBytes:     cfg.Limits.MaxResponseBytes,
		MaxWebSockets:        cfg.Limits.MaxWebSockets,
		WebSocketIdleTimeout: cfg.Limits.WebSocketIdleTimeout.Std(),
	})
	if err != nil {
		closeSet(set)
		return err
	}

	ln, err := publicListener(cfg.Listen)
	if err != nil {
		closeSet(set)
		return err
	}
	if pp := cfg.ProxyProtocol; pp != nil {
		ln = proxy.ProxyProtocolListener(ln, pp.Prefixes(), cfg.Limits.ReadTimeout.Std())
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		closeSet(set)
		return err
	}
	scheme := "http"
	if certs != nil {
		scheme = "https"
		redir, redirLn, err := startRedirect(cfg, srv, ln.Addr())
		if err != nil {
			ln.Close()
			adminLn.Close()
			closeSet(set)
			return err
		}
		if redir != nil {
			defer redir.Close()
			log.Info("redirecting plain HTTP to https", "addr", redirLn.Addr().String())
			fmt.Fprintf(stdout, "safeclose redirecting http://%s to https\n", redirLn.Addr())
		}
		ln = certs.Listener(ln)
	}
	admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = admin.Serve(adminLn) }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("safeclose listening", "addr", ln.Addr().String(), "admin", adminLn.Addr().String(), "tenants", len(tenants), "emulator", emuAddr)
	fmt.Fprintf(stdout, "safeclose listening on %s://%s (admin http://%s)\n", scheme, ln.Addr(), adminLn.Addr())

	var watch <-chan time.Time
	if *cfgPath != "" && *watchEvery > 0 {
		t := time.NewTicker(*watchEvery)
		defer t.Stop()
		watch = t.C
	}
	last := fingerprint(*cfgPath)
	lastTLS := tlsFingerprint(*cfgPath)
	for {
		select {
		case err := <-errc:
			// The listener failed for good: stop as on a signal, so the
			// requests in flight finish and leases are given back.
			log.Error("public listener failed; shutting down", "err", err)
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_ = srv.Shutdown(sctx)
			_ = admin.Shutdown(sctx)
			cancel()
			closeSet(set)
			return err
		case <-hup:
			// Fingerprints first, as the watch does: a file that changes
			// while it is being reloaded differs from them and is
			// reloaded again at the next tick.
			last = fingerprint(*cfgPath)
			set = reload(ctx, *cfgPath, cfg, secrets, b, srv, set, log)
			lastTLS = tlsFingerprint(*cfgPath)
			reloadCerts(*cfgPath, certs, log)
		case <-watch:
			if fp := fingerprint(*cfgPath); fp != last {
				last = fp
				log.Info("config or plugin file changed; reloading", "config", *cfgPath)
				set = reload(ctx, *cfgPath, cfg, secrets, b, srv, set, log)
			}
			if tp := tlsFingerprint(*cfgPath); tp != lastTLS {
				lastTLS = tp
				log.Info("tls settings or certificate files changed; reloading certificates")
				reloadCerts(*cfgPath, certs, log)
			}
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := srv.Shutdown(sctx)
			_ = admin.Shutdown(sctx)
			cancel()
			closeSet(set)
			if e := <-errc; e != nil && err == nil {
				err = e
			}
			return err
		}
	}
}

func closePlugins(ps []*hostabi.Plugin) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range ps {
		_ = p.Close(ctx)
	}
}

func webhookOptions(cfg *configs.File) proxy.WebhookOptions {
	w := cfg.Webhooks
	return proxy.WebhookOptions{
		MaxBodyBytes: w.MaxBodyBytes,
		Workers:      w.Workers,
		MaxAttempts:  w.MaxAttempts,
		Lease:        w.Lease.Std(),
		Backoff:      w.Backoff.Std(),
		MaxBackoff:   w.MaxBackoff.Std(),

		IntakeFirstAt: w.IntakeFirstAt,
		SourceIPs:     w.SourcePrefixes(),
	}
}

func startEmulator(c configs.Emulator, log *slog.Logger) (stop func(), addr string, err error) {
	sim, err := plaidsim.New(plaidsim.Options{
		ClientID: c.ClientID, Secret: c.Secret, StatePath: c.State,
		Logger: log.With("component", "plaidsim"),
	})
	if err != nil {
		return nil, "", fmt.Errorf("plaid emulator: %w", err)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		sim.Close()
		return nil, "", fmt.Errorf("plaid emulator: %w", err)
	}
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Warn("embedded Plaid sandbox EMULATOR is serving (dev mode; not real Plaid)", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		_ = sim.Close()
	}, ln.Addr().String(), nil
}

// publicListener uses a socket passed by the service manager (systemd socket
// activation: LISTEN_FDS=1, fd 3), which lets a restart keep the port and
// queue connections in the backlog; otherwise it listens on addr.
func publicListener(addr string) (net.Listener, error) {
	if os.Getenv("LISTEN_FDS") == "1" {
		if pid := os.Getenv("LISTEN_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			f := os.NewFile(3, "listen-fd")
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("socket activation (LISTEN_FDS=1): %w", err)
			}
			return ln, nil
		}
	}
	return net.Listen("tcp", addr)
}

// fingerprint summarises the config file's bytes and the size and mtime of
// every plugin file it names, so a change to either triggers a reload.
func fingerprint(path string) string {
	if path == "" {
		return ""
	}
	h := sha256.New()
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	h.Write(b)
	if cfg, err := configs.Load(path); err == nil {
		for _, t := range cfg.Tenants {
			var ps []configs.Plugin
			if t.Auth.Plugin != nil {
				ps = append(ps, *t.Auth.Plugin)
			}
			ps = append(ps, t.WebhookPlugins...)
			for _, p := range ps {
				if fi, err := os.Stat(p.Path); err == nil {
					fmt.Fprintf(h, "%s %d %d\n", p.Path, fi.Size(), fi.ModTime().UnixNano())
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// registerServeMetrics registers what serve itself exports beside the
// proxy's metrics: each certificate's end (with TLS) and the log lines lost.
func registerServeMetrics(reg prometheus.Registerer, certs *proxy.Certs, logw *lockedWriter) {
	if certs != nil {
		reg.MustRegister(certs) // safeclose_tls_certificate_not_after_seconds
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "safeclose_log_write_errors_total",
		Help: "Log and access-log lines that could not be written (their reader gone: a broken pipe, a full disk).",
	}, func() float64 { return float64(logw.errs.Load()) }))
}
