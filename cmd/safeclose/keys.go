package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/safeclose/safeclose/store"
)

// runKeys implements `safeclose keys gen|rotate`.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: safeclose keys gen | keys rotate [-config FILE]")
	}
	switch args[0] {
	case "gen":
		id, b64, err := store.GenerateKey()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "new key %s: put it FIRST in your keyring (it becomes primary), keep the old keys after it, then run `safeclose keys rotate`\n", id)
		fmt.Fprintf(stdout, "%s:%s\n", id, b64)
		return nil
	case "rotate":
		fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		cfgPath := fs.String("config", "", "config file (default: embedded dev config)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		log := newLogger(stderr, cfg.LogLevel)
		db, err := openStore(cfg, log)
		if err != nil {
			return fmt.Errorf("open store %s (stop the proxy first: one process per data dir): %w", storeName(cfg), err)
		}
		defer db.Close()
		if err := db.KeyStatus(); err != nil {
			return fmt.Errorf("keyring: %w", err)
		}
		n, err := db.Rotate()
		if err != nil {
			return fmt.Errorf("rotate (%d items re-sealed before the error): %w", n, err)
		}
		fmt.Fprintf(stdout, "re-sealed and re-authenticated %d items under the primary key; the other keys can now be retired from the keyring\n", n)
		return nil
	}
	return fmt.Errorf("unknown keys subcommand %q", args[0])
}
