package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/safeclose/safeclose/store"
)

// runKeys implements `safeclose keys gen|rotate`.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	leaf, args, err := leafArgs("keys", args, stdout, "gen", "rotate")
	if err != nil {
		return err
	}
	switch leaf {
	case "gen":
		if err := parseFlags(flag.NewFlagSet("keys gen", flag.ContinueOnError), args, stdout); err != nil {
			return err
		}
		id, b64, err := store.GenerateKey()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "new key %s: put it FIRST in your keyring (it becomes primary), keep the old keys after it, then run `safeclose keys rotate`\n", id)
		fmt.Fprintf(stdout, "%s:%s\n", id, b64)
		return nil
	case "rotate":
		var cfgPath string
		_, db, err := parseAndOpen(configFlagSet("keys rotate", &cfgPath), &cfgPath, args, stdout, stderr)
		if err != nil {
			return err
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
	return nil
}
