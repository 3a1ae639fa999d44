package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
)

// runSandbox runs the local Plaid sandbox emulator on its own, for offline
// development against any Plaid client.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8099", "listen address")
	clientID := fs.String("client-id", "safeclose-dev", "client_id the emulator accepts")
	secret := fs.String("secret", "safeclose-dev-secret", "secret the emulator accepts (an emulator credential, not a real one)")
	state := fs.String("state", "", "JSON state file to load and keep (empty: memory only)")
	seed := fs.Int64("seed", 0, "non-zero: deterministic ids and keys")
	scale := fs.Float64("time-scale", 1, "multiply webhook retry delays (0.001 for fast tests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := plaidsim.New(plaidsim.Options{
		ClientID: *clientID, Secret: *secret, StatePath: *state, Seed: *seed, TimeScale: *scale,
		Logger: log.With("component", "plaidsim"),
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "Plaid sandbox emulator listening on http://%s (client_id %s)\n", ln.Addr(), *clientID)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}
