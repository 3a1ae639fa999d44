package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/safeclose/safeclose/hostabi"
)

type checkOpts struct{ config string }

func checkFlagSet(o *checkOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "config file (default: the embedded dev config)")
	return fs
}

// runCheck builds a config the way serve would start it (validation, the
// keyring, the certificates, every tenant with its plugins loaded and
// initialised) without listening or opening the store, so a config can be
// checked before it is deployed or reloaded, next to a running proxy. It
// prints one line per problem and fails if there is one; warnings are
// printed and do not fail it.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o checkOpts
	if err := parseFlags(checkFlagSet(&o), args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(o.config)
	if err != nil {
		return err
	}
	var problems []string
	log := slog.New(slog.DiscardHandler)
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stdout, "warning: config: "+w)
	}
	switch kr, err := readKeyring(cfg); {
	case cfg.Keys == "":
		fmt.Fprintln(stdout, "warning: keys: none configured; exchanges will answer persisted:false")
	case err != nil:
		problems = append(problems, "keys: "+err.Error()+" (serve would run, but store no access token)")
	case devKey(kr):
		fmt.Fprintln(stdout, "warning: keys: the primary key is a development key ("+kr.PrimaryID()+"): tokens are not protected")
	}
	if _, err := openCerts(cfg, log); err != nil {
		problems = append(problems, "tls: "+err.Error())
	}
	// No compilation cache: serve may be using it, and a check must leave
	// nothing behind. Plugins get a private key/value store.
	engine, err := hostabi.NewEngine(ctx, hostabi.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("wasm engine: %w", err)
	}
	defer engine.Close(context.Background())
	emuAddr := ""
	if cfg.Emulator.Enabled {
		emuAddr = cfg.Emulator.Listen // not started: tenants only need its address
	}
	b := &builder{engine: engine, log: log, emuAddr: emuAddr}
	set := b.tenants(ctx, cfg)
	defer closeSet(set)
	plugins := 0
	for _, bt := range set {
		plugins += len(bt.plugins)
		if bt.err != nil {
			problems = append(problems, fmt.Sprintf("tenant %s: %v", bt.tenant.Name, bt.err))
		}
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return errors.New(plural(len(problems), "problem") + " found")
	}
	fmt.Fprintf(stdout, "config ok: %s, %s loaded\n", plural(len(set), "tenant"), plural(plugins, "plugin"))
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
