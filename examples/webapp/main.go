// Command webapp is the upstream of the app-side demo: a React app using
// react-plaid-link (src/, bundled by esbuild into dist/) served by this small
// Go server behind Safeclose, which owns /api/plaid/* and authenticates every
// request with the auth plugin in ./authplugin.
//
//	go run ./examples/webapp -listen 127.0.0.1:8081 -dist examples/webapp/dist
//
// The session key comes from $WEBAPP_SESSION_KEY (at least 32 bytes), the
// same secret the tenant's auth plugin verifies with. `make demo` starts it
// with Safeclose and the Plaid emulator; see the README, "The app side".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webapp:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on (keep it loopback: Safeclose is the app's only client)")
	dist := flag.String("dist", "examples/webapp/dist", "directory with the esbuild bundle")
	linkScript := flag.String("link-script", "", "DEV ONLY: URL of the Plaid emulator's link-initialize.js, used instead of Plaid's CDN")
	flag.Parse()
	key := os.Getenv("WEBAPP_SESSION_KEY")
	h, err := newHandler(Options{Dist: *dist, SessionKey: []byte(key), LinkScript: *linkScript})
	if err != nil {
		return fmt.Errorf("%w (set WEBAPP_SESSION_KEY)", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("webapp upstream listening", "addr", ln.Addr().String(), "dev_link_script", *linkScript)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
