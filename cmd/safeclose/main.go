// Command safeclose is the Safeclose edge proxy and its tools.
//
// Subcommands:
//
//	safeclose serve            run the proxy (default)
//	safeclose sandbox          run the local Plaid sandbox emulator
//	safeclose plugin check|run inspect or exercise a Wasm plugin offline
//	safeclose keys rotate|gen  manage the token-sealing keyring
//	safeclose webhook verify   check a Plaid webhook signature offline
//	safeclose webhooks list|replay  inspect and replay dead-lettered webhooks
//	safeclose items orphans    list Plaid items that may exist with no user holding them
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "safeclose:", err)
		}
		os.Exit(1)
	}
}

// run dispatches to a subcommand. It is separate from main so tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stdout, stderr)
	case "sandbox":
		return runSandbox(ctx, args, stdout, stderr)
	case "plugin":
		return runPlugin(ctx, args, stdout, stderr)
	case "keys":
		return runKeys(ctx, args, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, args, stdout, stderr)
	case "webhooks":
		return runWebhooks(ctx, args, stdout, stderr)
	case "items":
		return runItems(ctx, args, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: safeclose [serve|sandbox|plugin|keys|webhook|webhooks|items|migrate] [flags]")
		return nil
	default:
		return fmt.Errorf("unknown subcommand %q (try: safeclose help)", cmd)
	}
}
