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

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/internal/plaidsim"
)

// runSandbox runs the local Plaid sandbox emulator on its own, for offline
// development against any Plaid client.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o sandboxOpts
	if err := parseFlags(sandboxFlagSet(&o), args, stdout); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := plaidsim.New(plaidsim.Options{
		ClientID: o.clientID, Secret: o.secret, StatePath: o.state, Seed: o.seed, TimeScale: o.scale,
		Logger: log.With("component", "plaidsim"),
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "Plaid sandbox emulator listening on http://%s (client_id %s)\n", ln.Addr(), o.clientID)
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

type sandboxOpts struct {
	addr, clientID, secret, state string
	seed                          int64
	scale                         float64
}

func sandboxFlagSet(o *sandboxOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	def := configs.Default().Emulator // the embedded emulator's defaults are the standalone one's
	fs.StringVar(&o.addr, "addr", def.Listen, "listen address")
	fs.StringVar(&o.clientID, "client-id", def.ClientID, "client_id the emulator accepts")
	fs.StringVar(&o.secret, "secret", def.Secret, "secret the emulator accepts (an emulator credential, not a real one)")
	fs.StringVar(&o.state, "state", "", "JSON state file to load and keep (empty: memory only)")
	fs.Int64Var(&o.seed, "seed", 0, "non-zero: deterministic ids and keys")
	fs.Float64Var(&o.scale, "time-scale", 1, "multiply webhook retry delays (0.001 for fast tests)")
	return fs
}
