package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// runWebhooks implements `safeclose webhooks list|replay ID`: dead letters.
func runWebhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: safeclose webhooks list [-config FILE] [-n N] | webhooks replay [-config FILE] ID...")
	}
	sub := args[0]
	fs := flag.NewFlagSet("webhooks "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: embedded dev config)")
	n := fs.Int("n", 100, "list at most N dead letters")
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
	switch sub {
	case "list":
		es, err := db.DeadLetters(*n)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		for _, e := range es {
			var ev struct {
				Type   string `json:"webhook_type"`
				Code   string `json:"webhook_code"`
				ItemID string `json:"item_id"`
			}
			_ = json.Unmarshal(e.Body, &ev)
			if err := enc.Encode(map[string]any{
				"id": e.ID, "tenant": e.Tenant, "received_at": e.ReceivedAt, "attempts": e.Attempts,
				"last_error": e.LastError, "webhook_type": ev.Type, "webhook_code": ev.Code, "item_id": ev.ItemID,
			}); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "%d dead letter(s)\n", len(es))
		return nil
	case "replay":
		if fs.NArg() == 0 {
			return errors.New("webhooks replay: give one or more ids (from `safeclose webhooks list`)")
		}
		for _, id := range fs.Args() {
			if err := db.Replay(id); err != nil {
				return fmt.Errorf("replay %s: %w", id, err)
			}
			fmt.Fprintf(stdout, "replayed %s\n", id)
		}
		return nil
	}
	return fmt.Errorf("unknown webhooks subcommand %q", sub)
}
