package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/safeclose/safeclose/store"
)

// runWebhooks implements `safeclose webhooks list|replay ID`: dead letters.
func runWebhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := leafArgs("webhooks", args, stdout, "list", "replay")
	if err != nil {
		return err
	}
	var cfgPath string
	var n int
	var all, vouch bool
	fs := webhooksReplayFlagSet(&cfgPath, &all, &vouch)
	if sub == "list" {
		fs = webhooksListFlagSet(&cfgPath, &n)
	}
	cfg, db, err := parseAndOpen(fs, &cfgPath, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "list":
		es, err := db.DeadLetters(n)
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
				// Whether a keyring key authenticated it: one that is not
				// may not come from Plaid (store/entry_auth.go), and is
				// replayed only with -vouch.
				"authenticated": e.Authenticated,
			}); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "%d dead letter(s)\n", len(es))
		return nil
	case "replay":
		kr, _ := readKeyring(cfg)
		keyless := kr == nil
		if fs.NArg() == 0 && !all || fs.NArg() > 0 && all {
			return usageErrorf("webhooks replay", "webhooks replay: give one or more ids (from `safeclose webhooks list`), or -all")
		}
		ids := fs.Args()
		skipped, damaged := 0, 0
		if all {
			// The dead letters as they are now, each replayed once: an entry
			// that fails again while this runs (a running replica's
			// worker) is not picked up a second time. Without -vouch, only
			// those a keyring key authenticated.
			es, err := db.DeadLetters(maxReplayAll)
			if err != nil {
				return err
			}
			for _, e := range es {
				switch {
				case strings.HasPrefix(e.LastError, store.DamagedReason):
					damaged++ // it cannot be replayed (ErrCorrupt)
				case e.Authenticated || vouch || keyless:
					ids = append(ids, e.ID)
				default:
					skipped++
				}
			}
			if len(es) == maxReplayAll {
				fmt.Fprintf(stderr, "note: replaying the first %d dead letters; run it again for the rest\n", maxReplayAll)
			}
		}
		if keyless {
			// A replay authenticates the entry with the keyring; without
			// one a proxy that has its keys would not deliver it.
			fmt.Fprintln(stderr, "note: no keyring (keys:): replayed entries are not authenticated; a proxy running with keys will not deliver them (run the replay with the keys set)")
		}
		var failed error
		replayed := 0
		for _, id := range ids {
			if err := db.Replay(id, vouch); err != nil {
				fmt.Fprintf(stderr, "replay %s: %v\n", id, err)
				failed = errors.Join(failed, fmt.Errorf("replay %s: %w", id, err))
				continue
			}
			replayed++
			fmt.Fprintf(stdout, "replayed %s\n", id)
		}
		if all {
			fmt.Fprintf(stderr, "%d dead letter(s) replayed\n", replayed)
		}
		if damaged > 0 {
			fmt.Fprintf(stderr, "%d damaged dead letter(s) left out: they cannot be replayed (webhooks list shows them)\n", damaged)
		}
		if skipped > 0 {
			fmt.Fprintf(stderr, "%d dead letter(s) not authenticated by the keyring left out: check them (webhooks list shows \"authenticated\": false), then replay them with -vouch\n", skipped)
		}
		return failed
	}
	return nil
}

// maxReplayAll bounds one `webhooks replay -all`.
const maxReplayAll = 100_000

func webhooksReplayFlagSet(cfgPath *string, all, vouch *bool) *flag.FlagSet {
	fs := configFlagSet("webhooks replay", cfgPath)
	fs.BoolVar(all, "all", false, "replay every dead letter (as webhooks list shows them) instead of the ids given")
	fs.BoolVar(vouch, "vouch", false, "also replay dead letters no keyring key authenticated (you checked them: they may not come from Plaid), authenticating them")
	return fs
}

func webhooksListFlagSet(cfgPath *string, n *int) *flag.FlagSet {
	fs := configFlagSet("webhooks list", cfgPath)
	fs.IntVar(n, "n", 100, "list at most N dead letters")
	return fs
}
