package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// runItems implements `safeclose items orphans [-forget TENANT/ID]`: the
// Plaid items that may exist and be billed while no user holds them
// (a lost exchange answer, a crash inside an exchange, a webhook for an
// unknown item). See RATIONALE.md "What an exchange cannot make safe".
func runItems(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "orphans" {
		return errors.New("usage: safeclose items orphans [-config FILE] [-forget TENANT ITEM_OR_INTENT_ID]")
	}
	fs := flag.NewFlagSet("items orphans", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: embedded dev config)")
	forget := fs.Bool("forget", false, "remove the orphan TENANT ID (after dealing with it at Plaid)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	db, err := openStore(cfg, newLogger(stderr, "error"))
	if err != nil {
		return fmt.Errorf("open store %s (stop the proxy first: one process per data dir): %w", storeName(cfg), err)
	}
	defer db.Close()
	if *forget {
		if fs.NArg() != 2 {
			return errors.New("items orphans -forget: give TENANT and the item_id or intent_id")
		}
		if err := db.ForgetOrphan(fs.Arg(0), fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "forgot %s/%s\n", fs.Arg(0), fs.Arg(1))
		return nil
	}
	os, err := db.Orphans()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, o := range os {
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%d orphan item(s)\n", len(os))
	return nil
}
