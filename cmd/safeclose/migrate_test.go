package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// Issue 11.6: `safeclose migrate` moves a Badger data directory into
// PostgreSQL and back, records still sealed (no key needed), idempotent,
// with a progress line.
func TestMigrateBadgerToPostgresAndBack(t *testing.T) {
	dsn := pgtest.Database(t)
	dir := t.TempDir()
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	// The clock is real except while the expired KV entry is written.
	var past atomic.Bool
	clock := func() time.Time {
		if past.Load() {
			return time.Now().Add(-2 * time.Hour)
		}
		return time.Now()
	}
	bdb, err := store.Open(store.Options{Dir: filepath.Join(dir, "data"), Keyring: kr, MinFreeBytes: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// Issue 11.6: plugin KV entries move too: two tenants, one entry with a
	// TTL, and one already expired (not copied).
	ctx := context.Background()
	for _, kv := range []struct {
		tenant, key, val string
		ttl              time.Duration
	}{{"t1", "k1", "v1", 0}, {"t1", "k2", "v2", time.Hour}, {"t2", "k1", "w1", 0}} {
		if ok, err := bdb.KVSet(ctx, kv.tenant, []byte(kv.key), []byte(kv.val), kv.ttl, 10); err != nil || !ok {
			t.Fatalf("KVSet(%s, %s) = %v, %v", kv.tenant, kv.key, ok, err)
		}
	}
	past.Store(true)
	if ok, err := bdb.KVSet(ctx, "t2", []byte("gone"), []byte("x"), time.Hour, 10); err != nil || !ok {
		t.Fatalf("KVSet(expired) = %v, %v", ok, err)
	}
	past.Store(false)
	for i := range 3 {
		it := store.Item{Tenant: "t1", User: "alice", ItemID: fmt.Sprint("item-", i), State: store.StateOK, CreatedAt: now.Add(time.Duration(i) * time.Second)}
		if err := bdb.SaveItem(it, fmt.Sprint("access-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bdb.SaveLinkSession(store.LinkSession{Tenant: "t1", User: "alice", LinkToken: "link-1", CreatedAt: now, Expiration: now.Add(4 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := bdb.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: "t1", ItemID: "ghost"}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"a", "b"} {
		if _, _, err := bdb.Enqueue(context.Background(), store.Entry{Tenant: "t1", Body: []byte(b), BodySHA256: sha256.Sum256([]byte(b))}); err != nil {
			t.Fatal(err)
		}
	}
	e, _, err := bdb.LeaseNext("w", time.Minute, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.DeadLetter(e.ID, e.LeaseToken, "gave up"); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: `+filepath.Join(dir, "data")+`
store: {backend: badger}
tenants:
  - name: t1
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "`+strings.Repeat("b", 64)+`", user: u}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// migrate reads both sides from one config: data_dir and store.dsn.
	t.Setenv("SAFECLOSE_MIGRATE_DSN", dsn)
	cfgPG := strings.Replace(mustRead(t, cfg), "store: {backend: badger}", "store: {backend: postgres, dsn: env:SAFECLOSE_MIGRATE_DSN}", 1)
	if err := os.WriteFile(cfg, []byte(cfgPG), 0o600); err != nil {
		t.Fatal(err)
	}
	migrate := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(context.Background(), append([]string{"migrate", "-config", cfg}, args...), &out, &errb); err != nil {
			t.Fatalf("migrate %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	out := migrate()
	// 3 items, 3 owners, 1 canary, 1 key used, 1 link, 1 orphan, 1 queued,
	// 1 dead, 3 unexpired KV entries.
	if !strings.Contains(out, "15 records read, 15 written, 0 already there") {
		t.Fatalf("first migrate said %q", out)
	}
	if out := migrate(); !strings.Contains(out, "15 records read, 0 written, 15 already there") {
		t.Fatalf("second migrate (idempotent) said %q", out)
	}

	pdb, err := pg.Open(context.Background(), pg.Options{DSN: dsn, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus on PostgreSQL after migrate = %v", err)
	}
	for i := range 3 {
		if tok, err := pdb.AccessToken("t1", "alice", fmt.Sprint("item-", i)); err != nil || tok != fmt.Sprint("access-", i) {
			t.Fatalf("AccessToken(item-%d) on PostgreSQL = %q, %v", i, tok, err)
		}
	}
	if its, err := pdb.Items("t1", "alice"); err != nil || len(its) != 3 {
		t.Fatalf("Items on PostgreSQL = %d, %v", len(its), err)
	}
	if _, err := pdb.LinkSessionByToken("link-1"); err != nil {
		t.Fatalf("LinkSessionByToken on PostgreSQL = %v", err)
	}
	if n, err := pdb.QueueLen(); err != nil || n != 1 {
		t.Fatalf("QueueLen on PostgreSQL = %d, %v", n, err)
	}
	if dl, err := pdb.DeadLetters(10); err != nil || len(dl) != 1 || dl[0].LastError != "gave up" {
		t.Fatalf("DeadLetters on PostgreSQL = %+v, %v", dl, err)
	}
	kvWant := func(db interface {
		KVGet(context.Context, string, []byte) ([]byte, bool, error)
	}, where, tenant, key, want string) {
		t.Helper()
		v, found, err := db.KVGet(ctx, tenant, []byte(key))
		if err != nil || found != (want != "") || string(v) != want {
			t.Fatalf("KVGet(%s, %s) on %s = %q, %v, %v, want %q", tenant, key, where, v, found, err, want)
		}
	}
	kvWant(pdb, "PostgreSQL", "t1", "k1", "v1")
	kvWant(pdb, "PostgreSQL", "t1", "k2", "v2")
	kvWant(pdb, "PostgreSQL", "t2", "k1", "w1")
	kvWant(pdb, "PostgreSQL", "t2", "gone", "")
	pdb.Close()

	// And back, into an empty data directory.
	back := filepath.Join(dir, "back")
	if err := os.WriteFile(cfg, []byte(strings.Replace(cfgPG, filepath.Join(dir, "data"), back, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := migrate("-reverse"); !strings.Contains(out, "15 records read, 15 written") {
		t.Fatalf("reverse migrate said %q", out)
	}
	if out := migrate("-reverse"); !strings.Contains(out, "15 records read, 0 written, 15 already there") {
		t.Fatalf("second reverse migrate (idempotent) said %q", out)
	}
	bdb, err = store.Open(store.Options{Dir: back, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := bdb.AccessToken("t1", "alice", "item-2"); err != nil || tok != "access-2" {
		t.Fatalf("AccessToken on Badger after the round trip = %q, %v", tok, err)
	}
	if its, err := bdb.Items("t1", "alice"); err != nil || len(its) != 3 {
		t.Fatalf("Items on Badger after the round trip = %d, %v", len(its), err)
	}
	if os, err := bdb.Orphans(); err != nil || len(os) != 1 {
		t.Fatalf("Orphans on Badger after the round trip = %d, %v", len(os), err)
	}
	if ls, err := bdb.LinkSessions("t1", "alice", 5); err != nil || len(ls) != 1 {
		t.Fatalf("LinkSessions on Badger after the round trip = %d, %v", len(ls), err)
	}
	kvWant(bdb, "Badger", "t1", "k1", "v1")
	kvWant(bdb, "Badger", "t1", "k2", "v2")
	kvWant(bdb, "Badger", "t2", "k1", "w1")
	// The per-tenant counts came along: t1 holds 2 entries, so a quota of 2
	// refuses a third key and a quota of 3 takes it.
	if ok, err := bdb.KVSet(ctx, "t1", []byte("k3"), []byte("v3"), 0, 2); err != nil || ok {
		t.Fatalf("KVSet(t1, k3, max 2) on Badger after the round trip = %v, %v, want refused", ok, err)
	}
	if ok, err := bdb.KVSet(ctx, "t1", []byte("k3"), []byte("v3"), 0, 3); err != nil || !ok {
		t.Fatalf("KVSet(t1, k3, max 3) on Badger after the round trip = %v, %v, want stored", ok, err)
	}
	// The TTL came along too: two hours from now k2 is gone, k1 is not.
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	later, err := store.Open(store.Options{Dir: back, Keyring: kr, MinFreeBytes: -1, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	kvWant(later, "Badger two hours later", "t1", "k1", "v1")
	kvWant(later, "Badger two hours later", "t1", "k2", "")
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A migrate run from another directory than serve's, with a relative
// data_dir (the default is ./data), must not copy an empty store made on the
// spot and report success: PostgreSQL would then be served as the whole
// store, with no items in it.
func TestMigrateRefusesMissingDataDir(t *testing.T) {
	dsn := pgtest.Database(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "not-here")
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: `+missing+`
store: {backend: postgres, dsn: env:SAFECLOSE_MIGRATE_DSN}
tenants:
  - name: t1
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "`+strings.Repeat("b", 64)+`", user: u}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAFECLOSE_MIGRATE_DSN", dsn)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"migrate", "-config", cfg}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("migrate from a missing data_dir = %v (said %q), want an error naming it", err, out.String())
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("migrate made the missing data_dir (Stat = %v)", err)
	}
}
