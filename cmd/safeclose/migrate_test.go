package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
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

	cfg := offlineConfig(t, dir, "data_dir: "+filepath.Join(dir, "data")+"\nstore: {backend: badger}\n")
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
	// Once finished, the database holds data: running it again takes -merge.
	if out := migrate("-merge"); !strings.Contains(out, "15 records read, 0 written, 15 already there") {
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
	// Once finished, data_dir holds records: running it again takes -merge.
	if out := migrate("-reverse", "-merge"); !strings.Contains(out, "15 records read, 0 written, 15 already there") {
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

// writeMigrateConfig writes a config whose data_dir is data and whose
// store.dsn is read from SAFECLOSE_MIGRATE_DSN.
func writeMigrateConfig(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(`data_dir: `+data+`
store: {backend: postgres, dsn: env:SAFECLOSE_MIGRATE_DSN}
tenants:
  - name: t1
    hosts: [a.example]
    plaid: {env: sandbox, client_id: env:A_ID, secret: env:A_SECRET}
    auth: {api_keys: [{sha256: "`+strings.Repeat("b", 64)+`", user: u}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A `migrate -reverse` into a data_dir that still holds the store from
// before the move to PostgreSQL merged the two: an item removed on
// PostgreSQL since came back with its access token, and a webhook already
// delivered was queued again. It is refused, with nothing written, unless
// -merge says the merge is meant; a data_dir that carries the mark of an
// unfinished migrate is still resumed without -merge.
func TestMigrateReverseRefusesAStoreWithRecords(t *testing.T) {
	dsn := pgtest.Database(t)
	t.Setenv("SAFECLOSE_MIGRATE_DSN", dsn)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	openBadger := func(d string) *store.DB {
		t.Helper()
		db, err := store.Open(store.Options{Dir: d, Keyring: kr, MinFreeBytes: -1})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	bdb := openBadger(data)
	now := time.Now().UTC()
	for _, id := range []string{"removed", "kept"} {
		if err := bdb.SaveItem(store.Item{Tenant: "t1", User: "alice", ItemID: id, State: store.StateOK, CreatedAt: now}, "access-"+id); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := bdb.Enqueue(context.Background(), store.Entry{Tenant: "t1", Body: []byte("w"), BodySHA256: sha256.Sum256([]byte("w"))}); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	writeMigrateConfig(t, cfg, data)
	migrate := func(args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"migrate", "-config", cfg}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := migrate(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	// On PostgreSQL since: the user removed an item, the webhook was
	// delivered, another item was linked.
	pdb, err := pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 2, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.DeleteItem("t1", "removed"); err != nil {
		t.Fatal(err)
	}
	e, ok, err := pdb.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok {
		t.Fatalf("LeaseNext = %v, %v", ok, err)
	}
	if err := pdb.Complete(e.ID, e.LeaseToken); err != nil {
		t.Fatal(err)
	}
	if err := pdb.SaveItem(store.Item{Tenant: "t1", User: "alice", ItemID: "new", State: store.StateOK, CreatedAt: now}, "access-new"); err != nil {
		t.Fatal(err)
	}
	var recs []store.Record
	if err := pdb.Export(func(r store.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	pdb.Close()

	// Back into the old data_dir: refused, naming it, nothing written.
	out, err := migrate("-reverse")
	if err == nil || !strings.Contains(err.Error(), data) || !strings.Contains(err.Error(), "-merge") {
		t.Fatalf("migrate -reverse into a data_dir holding records = %v (said %q), want an error naming %s and -merge", err, out, data)
	}
	bdb = openBadger(data)
	if marked, err := bdb.Marked(); err != nil || marked {
		t.Fatalf("Marked() after the refused -reverse = %v, %v, want false", marked, err)
	}
	if _, err := bdb.Item("t1", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Item(new) after the refused -reverse = %v, want ErrNotFound (nothing copied)", err)
	}
	bdb.Close()

	// The other way, Badger into the database replicas served from since:
	// refused too, nothing written (the removed item stays removed).
	if out, err := migrate(); err == nil || !strings.Contains(err.Error(), "PostgreSQL") || !strings.Contains(err.Error(), "-merge") {
		t.Fatalf("migrate into a database holding data = %v (said %q), want an error naming PostgreSQL and -merge", err, out)
	}
	pdb, err = pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 2, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdb.Item("t1", "removed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Item(removed) on PostgreSQL after the refused migrate = %v, want ErrNotFound", err)
	}
	if marked, err := pdb.Marked(); err != nil || marked {
		t.Fatalf("PostgreSQL Marked() after the refused migrate = %v, %v, want false", marked, err)
	}
	pdb.Close()

	// -merge does what it says: PostgreSQL's new records come in, those
	// already in data_dir are kept as they are there.
	if out, err := migrate("-reverse", "-merge"); err != nil {
		t.Fatalf("migrate -reverse -merge: %v\n%s", err, out)
	}
	bdb = openBadger(data)
	for _, id := range []string{"removed", "kept", "new"} {
		if tok, err := bdb.AccessToken("t1", "alice", id); err != nil || tok != "access-"+id {
			t.Fatalf("AccessToken(%s) after -reverse -merge = %q, %v", id, tok, err)
		}
	}
	bdb.Close()

	// A -reverse into a fresh data_dir cut short leaves the mark and some
	// records; running it again without -merge finishes it.
	fresh := filepath.Join(dir, "fresh")
	bdb = openBadger(fresh)
	if _, err := bdb.Import(store.Record{Kind: store.RecKeyUsed, Key: store.MigrateMark}); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:3] {
		if _, err := bdb.Import(r); err != nil {
			t.Fatal(err)
		}
	}
	bdb.Close()
	writeMigrateConfig(t, cfg, fresh)
	if out, err := migrate("-reverse"); err != nil {
		t.Fatalf("migrate -reverse resuming into %s: %v\n%s", fresh, err, out)
	}
	bdb = openBadger(fresh)
	defer bdb.Close()
	if err := bdb.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus after the resumed -reverse = %v", err)
	}
	if its, err := bdb.Items("t1", "alice"); err != nil || len(its) != 2 {
		t.Fatalf("Items after the resumed -reverse = %+v, %v, want kept and new", its, err)
	}
	if _, err := bdb.Item("t1", "removed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Item(removed) after the resumed -reverse = %v, want ErrNotFound", err)
	}
	if n, err := bdb.QueueLen(); err != nil || n != 0 {
		t.Fatalf("QueueLen after the resumed -reverse = %d, %v, want 0 (delivered on PostgreSQL)", n, err)
	}
}
