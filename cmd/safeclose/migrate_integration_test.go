//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// A migrate SIGKILLed midway leaves a destination that holds some records
// and not others. A serve opened on it must not take it for the whole store
// (its keys check fails, so tokens are refused and /readyz is not ready);
// the source is untouched, and copying the half-copied side back over it is
// refused; a second run finishes the copy and the
// destination is then served as usual. No token is printed.
func TestMigrateKilledMidwayIsNotServedAsComplete(t *testing.T) {
	dsn := pgtest.Database(t)
	bin := binaryPath(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	kr, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	const items = 1500
	bdb, err := store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range items {
		it := store.Item{Tenant: "t1", User: "alice", ItemID: fmt.Sprintf("item-%04d", i), State: store.StateOK, CreatedAt: now}
		if err := bdb.SaveItem(it, fmt.Sprintf("access-sandbox-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: `+data+`
store: {backend: postgres, dsn: env:SAFECLOSE_MIGRATE_DSN}
tenants:
  - name: t1
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "`+strings.Repeat("b", 64)+`", user: u}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SAFECLOSE_MIGRATE_DSN="+dsn, "A_ID=x", "A_SECRET=y")
	var printed bytes.Buffer // everything migrate wrote, both runs

	// First run: SIGKILL once it has copied 500 records.
	printed.WriteString(killMigrateAfter(t, bin, env, 500, "-config", cfg))

	ctx := context.Background()
	openPG := func() *pg.DB {
		t.Helper()
		db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 2, Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	var n int
	if c, err := pgx.Connect(ctx, dsn); err != nil {
		t.Fatal(err)
	} else {
		err = c.QueryRow(ctx, "SELECT count(*) FROM sc_items").Scan(&n)
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 || n >= items {
		t.Fatalf("PostgreSQL holds %d items after the kill; want some, not all", n)
	}
	pdb := openPG()
	if err := pdb.KeyStatus(); !errors.Is(err, store.ErrKeyMismatch) {
		pdb.Close()
		t.Fatalf("KeyStatus of the half-copied PostgreSQL (%d of %d items) = %v, want ErrKeyMismatch: a serve there would take it for the whole store", n, items, err)
	}
	pdb.Close()

	// The source is intact.
	bdb, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	if its, err := bdb.Items("t1", "alice"); err != nil || len(its) != items {
		t.Fatalf("Badger source after the kill holds %d items (%v), want %d", len(its), err, items)
	}
	bdb.Close()

	// Copying the half-copied side back is refused, and leaves the whole one unmarked.
	cmd := exec.Command(bin, "migrate", "-config", cfg, "-reverse")
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	printed.Write(b)
	if err == nil || !strings.Contains(string(b), "did not finish") {
		t.Fatalf("migrate -reverse from the half-copied PostgreSQL = %v, want refused\n%s", err, b)
	}
	bdb, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus of the Badger source after the refused -reverse = %v", err)
	}
	bdb.Close()

	// Second run finishes.
	cmd = exec.Command(bin, "migrate", "-config", cfg)
	cmd.Env = env
	b, err = cmd.CombinedOutput()
	printed.Write(b)
	if err != nil {
		t.Fatalf("second migrate: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), fmt.Sprintf("%d records read", 2*items+2)) {
		t.Fatalf("second migrate said %q", b)
	}
	pdb = openPG()
	defer pdb.Close()
	if err := pdb.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus after the second migrate = %v", err)
	}
	if its, err := pdb.Items("t1", "alice"); err != nil || len(its) != items {
		t.Fatalf("PostgreSQL after the second migrate holds %d items (%v), want %d", len(its), err, items)
	}
	for _, i := range []int{0, items / 2, items - 1} {
		if tok, err := pdb.AccessToken("t1", "alice", fmt.Sprintf("item-%04d", i)); err != nil || tok != fmt.Sprintf("access-sandbox-%04d", i) {
			t.Fatalf("AccessToken(item-%04d) = %q, %v", i, tok, err)
		}
	}
	if strings.Contains(printed.String(), "access-sandbox") {
		t.Fatalf("migrate printed an access token:\n%s", printed.String())
	}
}

// A `migrate -reverse` SIGKILLed midway leaves a fresh data_dir holding some
// records and the mark. Running it again without -merge resumes it (the
// mark tells it from a data_dir with old records, which is refused), and
// the data_dir is then whole and served.
func TestMigrateReverseKilledMidwayResumes(t *testing.T) {
	dsn := pgtest.Database(t)
	bin := binaryPath(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	kr, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	const items = 1500
	ctx := context.Background()
	pdb, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 2, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range items {
		it := store.Item{Tenant: "t1", User: "alice", ItemID: fmt.Sprintf("item-%04d", i), State: store.StateOK, CreatedAt: now}
		if err := pdb.SaveItem(it, fmt.Sprintf("access-sandbox-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	pdb.Close()
	cfg := filepath.Join(dir, "c.yaml")
	writeMigrateConfig(t, cfg, data)
	env := append(os.Environ(), "SAFECLOSE_MIGRATE_DSN="+dsn, "A_ID=x", "A_SECRET=y")

	killMigrateAfter(t, bin, env, 500, "-config", cfg, "-reverse")
	bdb, err := store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	its, err := bdb.Items("t1", "alice")
	if err != nil || len(its) == 0 || len(its) >= items {
		t.Fatalf("data_dir holds %d items (%v) after the kill; want some, not all", len(its), err)
	}
	if marked, err := bdb.Marked(); err != nil || !marked {
		t.Fatalf("Marked() after the kill = %v, %v, want true", marked, err)
	}
	bdb.Close()

	cmd := exec.Command(bin, "migrate", "-config", cfg, "-reverse")
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("migrate -reverse again (no -merge): %v\n%s", err, b)
	}
	bdb, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus after the resumed -reverse = %v", err)
	}
	if its, err := bdb.Items("t1", "alice"); err != nil || len(its) != items {
		t.Fatalf("data_dir after the resumed -reverse holds %d items (%v), want %d", len(its), err, items)
	}
	if tok, err := bdb.AccessToken("t1", "alice", "item-1499"); err != nil || tok != "access-sandbox-1499" {
		t.Fatalf("AccessToken(item-1499) = %q, %v", tok, err)
	}
}

// killMigrateAfter runs the binary's migrate with args and SIGKILLs it once
// its progress line counts n records read; it returns everything it
// printed, and fails the test if it was not killed.
func killMigrateAfter(t *testing.T, bin string, env []string, n int, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"migrate"}, args...)...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	var once sync.Once
	sc := bufio.NewScanner(out)
	sc.Split(func(b []byte, atEOF bool) (int, []byte, error) { // progress lines end in \r
		if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
			return i + 1, b[:i], nil
		}
		if atEOF && len(b) > 0 {
			return len(b), b, nil
		}
		return 0, nil, nil
	})
	mark := fmt.Sprintf("%d records read", n)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), mark) {
			once.Do(func() { cmd.Process.Kill() })
		}
	}
	err = cmd.Wait()
	printed.Write(stderr.Bytes())
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.Success() {
		t.Fatalf("migrate %v was not killed (%v); output:\n%s", args, err, printed.String())
	}
	return printed.String()
}
