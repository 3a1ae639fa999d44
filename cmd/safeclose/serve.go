package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	return cfg, nil
}

// openKeyring resolves the configured keyring. A missing or malformed keyring
// is not fatal: the proxy runs, and exchanges answer persisted:false with a
// hint, which is what an admin needs to see.
func openKeyring(cfg *configs.File, log *slog.Logger) *store.Keyring {
	if cfg.Keys == "" {
		log.Warn("no keyring configured (keys:): access tokens cannot be stored; exchanges will answer persisted:false")
		return nil
	}
	sec, err := cfg.Keys.Resolve()
	if err != nil {
		log.Warn("keyring unavailable: access tokens cannot be stored; exchanges will answer persisted:false", "err", err)
		return nil
	}
	kr, err := store.ParseKeyring(sec.Reveal())
	if err != nil {
		log.Error("keyring is malformed: access tokens cannot be stored", "err", err)
		return nil
	}
	if strings.HasPrefix(kr.PrimaryID(), "dev") {
		log.Warn("!!! USING THE DEVELOPMENT SEALING KEY: tokens are NOT protected. Never use it with real Plaid credentials !!!", "key_id", kr.PrimaryID())
	}
	return kr
}

func openStore(cfg *configs.File, log *slog.Logger) (*store.DB, error) {
	return store.Open(store.Options{
		Dir:       cfg.DataDir,
		Keyring:   openKeyring(cfg, log),
		Logger:    log.With("component", "store"),
		DedupeTTL: cfg.Webhooks.DedupeTTL.Std(),
	})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: the embedded dev config, configs/safeclose.yaml)")
	watchEvery := fs.Duration("watch", 2*time.Second, "reload when the config file or a plugin file changes, checked this often (0: only on SIGHUP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	db, err := openStore(cfg, log)
	if err != nil {
		return fmt.Errorf("open store %s: %w", cfg.DataDir, err)
	}
	defer db.Close()

	var emuAddr string
	if cfg.Emulator.Enabled {
		stop, addr, err := startEmulator(cfg.Emulator, log)
		if err != nil {
			return err
		}
		defer stop()
		emuAddr = addr
	}

	engine, err := hostabi.NewEngine(ctx, hostabi.Options{CacheDir: cfg.PluginCache, Logger: log.With("component", "hostabi")})
	if err != nil {
		return fmt.Errorf("wasm engine: %w", err)
	}
	defer engine.Close(context.Background())

	b := &builder{engine: engine, log: log, emuAddr: emuAddr}
	tenants, plugins, err := b.tenants(ctx, cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := proxy.New(proxy.Options{
		Tenants:      tenants,
		Store:        db,
		Logger:       log,
		MaxBodyBytes: cfg.Limits.MaxBodyBytes,
		ReadTimeout:  cfg.Limits.ReadTimeout.Std(),
		WriteTimeout: cfg.Limits.WriteTimeout.Std(),
		IdleTimeout:  cfg.Limits.IdleTimeout.Std(),
		PlaidTimeout: cfg.Limits.PlaidTimeout.Std(),
		Webhooks:     webhookOptions(cfg),
		Registry:     reg,
		// Issue 13: what passes through the reverse proxy.
		MaxResponseBytes:     cfg.Limits.MaxResponseBytes,
		MaxWebSockets:        cfg.Limits.MaxWebSockets,
		WebSocketIdleTimeout: cfg.Limits.WebSocketIdleTimeout.Std(),
	})
	if err != nil {
		closePlugins(plugins)
		return err
	}

	ln, err := publicListener(cfg.Listen)
	if err != nil {
		closePlugins(plugins)
		return err
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		closePlugins(plugins)
		return err
	}
	admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = admin.Serve(adminLn) }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("safeclose listening", "addr", ln.Addr().String(), "admin", adminLn.Addr().String(), "tenants", len(tenants), "emulator", emuAddr)
	fmt.Fprintf(stdout, "safeclose listening on http://%s (admin http://%s)\n", ln.Addr(), adminLn.Addr())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var watch <-chan time.Time
	if *cfgPath != "" && *watchEvery > 0 {
		t := time.NewTicker(*watchEvery)
		defer t.Stop()
		watch = t.C
	}
	last := fingerprint(*cfgPath)
	for {
		select {
		case err := <-errc:
			closePlugins(plugins)
			return err
		case <-hup:
			plugins = reload(ctx, *cfgPath, b, srv, plugins, log)
			last = fingerprint(*cfgPath)
		case <-watch:
			if fp := fingerprint(*cfgPath); fp != last {
				last = fp
				log.Info("config or plugin file changed; reloading", "config", *cfgPath)
				plugins = reload(ctx, *cfgPath, b, srv, plugins, log)
			}
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := srv.Shutdown(sctx)
			_ = admin.Shutdown(sctx)
			cancel()
			closePlugins(plugins)
			if e := <-errc; e != nil && err == nil {
				err = e
			}
			return err
		}
	}
}

// reload builds a complete new tenant set and swaps it in; on any error the
// old set keeps serving.
func reload(ctx context.Context, path string, b *builder, srv *proxy.Server, old []*hostabi.Plugin, log *slog.Logger) []*hostabi.Plugin {
	cfg, err := loadConfig(path)
	if err != nil {
		log.Error("reload refused: config invalid; the old config keeps serving", "err", err)
		return old
	}
	tenants, plugins, err := b.tenants(ctx, cfg)
	if err != nil {
		log.Error("reload refused; the old config keeps serving", "err", err)
		return old
	}
	if err := srv.Reload(tenants); err != nil {
		closePlugins(plugins)
		log.Error("reload refused; the old config keeps serving", "err", err)
		return old
	}
	go func() { // requests that picked the old table finish first
		time.Sleep(proxy.ReloadGrace)
		closePlugins(old)
	}()
	return plugins
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
