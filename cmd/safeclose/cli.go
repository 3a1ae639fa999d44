package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/safeclose/safeclose/configs"
)

// command is one subcommand: its one-line summary (for `safeclose help`)
// and its usage with examples (for `safeclose help CMD` and `CMD -h`).
type command struct {
	name, summary, usage string
}

// commands lists the subcommands in the order `safeclose help` shows them.
// Issue 10.8: one-line help per subcommand, usage with examples.
func commands() []command {
	return []command{
		{"serve", "run the proxy (the default subcommand)", `usage: safeclose serve [-config FILE] [-watch DURATION]

examples:
  safeclose serve                        # the embedded dev config (configs/safeclose.yaml)
  safeclose serve -config prod.yaml      # reload on SIGHUP or when the file changes
  safeclose serve -config prod.yaml -watch 0`},
		{"check", "check a config as serve would start it (keys, certificates, every tenant's plugins), without serving", `usage: safeclose check [-config FILE]

Exits 1 and prints one line per problem if serve would refuse the config or
start a tenant unavailable; a running proxy is not disturbed (the store is
not opened). Run it before a deploy or a reload.

examples:
  safeclose check -config prod.yaml
  safeclose check -config new.yaml && cp new.yaml prod.yaml   # serve reloads it`},
		{"sandbox", "run the local Plaid sandbox emulator", `usage: safeclose sandbox [-addr HOST:PORT] [-client-id ID] [-secret S] [-state FILE] [-seed N] [-time-scale F]

examples:
  safeclose sandbox                                  # http://127.0.0.1:8099
  safeclose sandbox -state sim.json -seed 1          # kept state, deterministic ids`},
		{"plugin", "inspect (check) or exercise (run) a Wasm plugin offline", `usage: safeclose plugin check FILE.wasm [-kind auth|event] [-cap CAPS] [flags]
       safeclose plugin run   FILE.wasm [-request 'METHOD /path'] [-H 'Name: value']... [flags]

examples:
  safeclose plugin check auth.wasm -cap config,crypto
  safeclose plugin run auth.wasm -cap config,crypto -config conf.json -request 'GET /app' -H 'Authorization: Bearer …'
  safeclose plugin run hook.wasm -kind event -event webhook.json`},
		{"keys", "generate a sealing key (gen) or re-seal every item under the primary (rotate)", `usage: safeclose keys gen
       safeclose keys rotate [-config FILE]

examples:
  safeclose keys gen                                   # prints id:base64; put it FIRST in the keyring
  SAFECLOSE_KEYS="new:…,old:…" safeclose keys rotate -config prod.yaml`},
		{"webhook", "check a Plaid webhook signature offline, naming the failing step", `usage: safeclose webhook verify -body FILE -header JWT|@FILE -jwk FILE [-at UNIXTIME]

examples:
  safeclose webhook verify -body body.json -header "$JWT" -jwk key.json -at 1590887001`},
		{"webhooks", "list or replay dead-lettered webhooks (stop the proxy first)", `usage: safeclose webhooks list [-config FILE] [-n N]
       safeclose webhooks replay [-config FILE] [-vouch] ID...
       safeclose webhooks replay [-config FILE] [-vouch] -all

examples:
  safeclose webhooks list -config prod.yaml -n 10
  safeclose webhooks replay -config prod.yaml 01J…
  safeclose webhooks replay -config prod.yaml -all`},
		{"items", "list Plaid items that may exist with no user holding them (stop the proxy first)", `usage: safeclose items orphans [-config FILE] [-forget TENANT ITEM_OR_INTENT_ID]

examples:
  safeclose items orphans -config prod.yaml
  safeclose items orphans -config prod.yaml -forget acme item-123`},
		{"migrate", "copy a Badger data_dir into PostgreSQL (store.dsn), or back with -reverse; records stay sealed", `usage: safeclose migrate -config FILE [-reverse] [-merge]

The destination must hold no data: records already there are kept as they
are, so copying into a store that lived on after an earlier move (the
data_dir from before the move to PostgreSQL, or a database replicas served
from) would keep or bring back items, tokens and queue entries removed or
changed since. Copy into an empty one, or pass -merge to merge on purpose.
A destination left by a migrate that did not finish is resumed without
-merge.

examples:
  safeclose migrate -config prod.yaml                    # data_dir → an empty store.dsn
  safeclose migrate -config prod.yaml -reverse           # store.dsn → an empty data_dir
  safeclose migrate -config prod.yaml -reverse -merge    # store.dsn → data_dir, keeping what it holds`},
		{"help", "print this help, or a subcommand's usage", `usage: safeclose help [SUBCOMMAND]

examples:
  safeclose help
  safeclose help webhooks`},
	}
}

// flagSets returns a fresh FlagSet for every leaf subcommand, by name
// ("serve", "keys rotate", ...), with throwaway targets: for help output and
// for the README test. A leaf without flags has an empty set.
func flagSets() map[string]*flag.FlagSet {
	var pf pluginFlags
	var ro pluginRunOpts
	var s string
	return map[string]*flag.FlagSet{
		"serve":           serveFlagSet(new(serveOpts)),
		"check":           checkFlagSet(new(checkOpts)),
		"sandbox":         sandboxFlagSet(new(sandboxOpts)),
		"plugin check":    pluginCheckFlagSet(&pf),
		"plugin run":      pluginRunFlagSet(&pf, &ro),
		"keys gen":        flag.NewFlagSet("keys gen", flag.ContinueOnError),
		"keys rotate":     configFlagSet("keys rotate", &s),
		"webhook verify":  verifyFlagSet(new(verifyOpts)),
		"webhooks list":   webhooksListFlagSet(&s, new(int)),
		"webhooks replay": webhooksReplayFlagSet(&s, new(bool), new(bool)),
		"items orphans":   orphansFlagSet(&s, new(bool)),
		"migrate":         migrateFlagSet(new(migrateOpts)),
	}
}

// configFlagSet is a FlagSet with the -config flag shared by the offline
// subcommands.
func configFlagSet(name string, cfgPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(cfgPath, "config", "", "config file (default: embedded dev config)")
	return fs
}

// usageError is a mistake in the command line: exit status 2 with usage.
type usageError struct {
	cmd string // the subcommand whose usage to print; "" for the overview
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// parseFlags parses args into fs, once. -h prints the subcommand's help to
// stdout and returns flag.ErrHelp (exit 0); a bad flag is a *usageError.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard) // errors are reported once, by main
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, fs.Name())
		return err
	}
	if err != nil {
		return &usageError{cmd: fs.Name(), err: err}
	}
	return nil
}

// parseAndOpen is the shared start of the subcommands that open the store
// offline: parse the flags once (fs must define -config into cfgPath), load
// and validate the config, open the store. The caller closes the store.
func parseAndOpen(fs *flag.FlagSet, cfgPath *string, args []string, stdout, stderr io.Writer) (*configs.File, backend, error) {
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return nil, nil, err
	}
	db, err := openStore(cfg, newLogger(stderr, "error"))
	if err != nil {
		return nil, nil, fmt.Errorf("open store %s (stop the proxy first: one process per data dir): %w", storeName(cfg), err)
	}
	return cfg, db, nil
}

// printOverview prints the list of subcommands.
func printOverview(w io.Writer) {
	fmt.Fprintln(w, "usage: safeclose [SUBCOMMAND] [flags]   (no subcommand: serve)")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`safeclose help SUBCOMMAND` or `safeclose SUBCOMMAND -h` shows its flags and examples.")
}

// printHelp prints the usage, examples and flags of a subcommand; name may
// be a leaf ("keys rotate"), whose flags alone are then listed. It reports
// whether the subcommand exists.
func printHelp(w io.Writer, name string) bool {
	top, _, _ := strings.Cut(name, " ")
	for _, c := range commands() {
		if c.name != top {
			continue
		}
		fmt.Fprintf(w, "safeclose %s: %s\n\n%s\n", c.name, c.summary, c.usage)
		sets := flagSets()
		var leaves []string
		for leaf := range sets {
			if leaf == name || (leaf == top || strings.HasPrefix(leaf, top+" ")) && name == top {
				leaves = append(leaves, leaf)
			}
		}
		sort.Strings(leaves)
		for _, leaf := range leaves {
			fs := sets[leaf]
			n := 0
			fs.VisitAll(func(*flag.Flag) { n++ })
			if n == 0 {
				continue
			}
			fmt.Fprintf(w, "\nflags of safeclose %s:\n", leaf)
			fs.SetOutput(w)
			fs.PrintDefaults()
		}
		return true
	}
	return false
}

// runHelp implements `safeclose help [SUBCOMMAND]`.
func runHelp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		printOverview(stdout)
		return nil
	}
	if !printHelp(stdout, strings.Join(args, " ")) {
		return usageErrorf("", "help: unknown subcommand %q", args[0])
	}
	return nil
}
