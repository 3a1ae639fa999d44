package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/store"
)

// Issue 9.7: `safeclose items orphans` lists the items that may exist at
// Plaid with no user holding them, and -forget drops one.
func TestItemsOrphansCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	db, err := store.Open(store.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	in, err := db.BeginExchange(store.Intent{Tenant: "dev", User: "alice", LinkTokenHash: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.OrphanIntent(in, "", "lost answer"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: "dev", ItemID: "item-x"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\ntenants:\n  - name: dev\n    hosts: [x.test]\n    plaid: {env: sandbox, client_id: env:X, secret: env:X, client_name: X, products: [transactions], country_codes: [US], language: en}\n    auth: {api_keys: [{sha256: %s, user: u}]}\n", data, strings.Repeat("b", 64))), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("X", "x")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"items", "orphans", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("items orphans: %v", err)
	}
	if s := out.String(); !strings.Contains(s, `"kind":"lost_exchange"`) || !strings.Contains(s, `"user":"alice"`) ||
		!strings.Contains(s, `"item_id":"item-x"`) || !strings.Contains(errOut.String(), "2 orphan item(s)") {
		t.Errorf("items orphans printed %q / %q", s, errOut.String())
	}
	if err := run(context.Background(), []string{"items", "orphans", "-config", cfg, "-forget", "dev", "item-x"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("forget: %v", err)
	}
	out.Reset()
	errOut.Reset()
	if err := run(context.Background(), []string{"items", "orphans", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "item-x") || !strings.Contains(errOut.String(), "1 orphan item(s)") {
		t.Errorf("after forget: %q / %q", out.String(), errOut.String())
	}
	if err := run(context.Background(), []string{"items"}, io.Discard, io.Discard); err == nil {
		t.Error("`items` without a subcommand succeeded")
	}
}
