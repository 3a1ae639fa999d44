package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
)

// runItems implements `safeclose items orphans [-forget TENANT/ID]`: the
// Plaid items that may exist and be billed while no user holds them
// (a lost exchange answer, a crash inside an exchange, a webhook for an
// unknown item). See RATIONALE.md "What an exchange cannot make safe".
func runItems(_ context.Context, args []string, stdout, stderr io.Writer) error {
	_, args, err := leafArgs("items", args, stdout, "orphans")
	if err != nil {
		return err
	}
	var cfgPath string
	var forget bool
	fs := orphansFlagSet(&cfgPath, &forget)
	_, db, err := parseAndOpen(fs, &cfgPath, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	if forget {
		if fs.NArg() != 2 {
			return usageErrorf("items orphans", "items orphans -forget: give TENANT and the item_id or intent_id")
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

func orphansFlagSet(cfgPath *string, forget *bool) *flag.FlagSet {
	fs := configFlagSet("items orphans", cfgPath)
	fs.BoolVar(forget, "forget", false, "remove the orphan TENANT ID (after dealing with it at Plaid)")
	return fs
}
