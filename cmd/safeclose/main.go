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
//	safeclose help [CMD]       usage and examples (also: safeclose CMD -h)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainCode(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainCode runs a subcommand and returns the exit status: 0 on success and
// for help, 2 for a mistake in the command line (with usage on stderr), 1
// for any other error. It is separate from main so tests can call it.
func mainCode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "safeclose:", err)
		if ue.cmd == "" {
			printOverview(stderr)
		} else {
			printHelp(stderr, ue.cmd)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "safeclose:", err)
		return 1
	}
}

// run dispatches to a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, args, stdout, stderr)
	case "check":
		return runCheck(ctx, args, stdout, stderr)
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
	case "help":
		return runHelp(args, stdout)
	case "migrate":
		return runMigrate(ctx, args, stdout, stderr)
	default:
		return usageErrorf("", "unknown subcommand %q (try: safeclose help)", cmd)
	}
}

// leafArgs checks the sub-subcommand of cmd (one of leaves) and handles -h
// in its place. It returns the leaf and the arguments after it.
func leafArgs(cmd string, args []string, stdout io.Writer, leaves ...string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usageErrorf(cmd, "%s: give one of: %s", cmd, strings.Join(leaves, ", "))
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printHelp(stdout, cmd)
		return "", nil, flag.ErrHelp
	}
	for _, l := range leaves {
		if args[0] == l {
			return l, args[1:], nil
		}
	}
	return "", nil, usageErrorf(cmd, "unknown %s subcommand %q (want one of: %s)", cmd, args[0], strings.Join(leaves, ", "))
}
