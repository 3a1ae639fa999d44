package pg_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
	"github.com/safeclose/safeclose/store/storetest"
)

func testDSN(t *testing.T) string { return pgtest.Database(t) }

func opener(t *testing.T) storetest.Opener {
	dsn := testDSN(t)
	return func(t *testing.T, cfg storetest.Config) storetest.Store {
		db, err := pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 8, Keyring: cfg.Keyring, Now: cfg.Now})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
}

// Issue 11.1: PostgreSQL passes the same conformance suite as Badger.
func TestConformance(t *testing.T) {
	storetest.Run(t, opener)
}

// Issue 11.3: migrations run once, concurrently started replicas agree, and
// a database with a newer schema is refused.
func TestMigrations(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 2})
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n, v int
	if err := c.QueryRow(ctx, "SELECT count(*), max(version) FROM sc_schema_version").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != pg.SchemaVersion() || v != pg.SchemaVersion() {
		t.Fatalf("sc_schema_version: %d rows, version %d; want %d", n, v, pg.SchemaVersion())
	}
	if _, err := c.Exec(ctx, "INSERT INTO sc_schema_version (version) VALUES ($1)", pg.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Open(ctx, pg.Options{DSN: dsn}); !errors.Is(err, pg.ErrSchemaTooNew) {
		t.Fatalf("Open(newer schema) = %v, want ErrSchemaTooNew", err)
	}
}

// Issue 11.4: with PostgreSQL down, operations answer store.ErrUnavailable
// (the proxy's 503) within the operation timeout, and the store recovers by
// itself when the server is back.
func TestPostgresDown(t *testing.T) {
	c := pgtest.NewCluster(t)
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	db, err := pg.Open(context.Background(), pg.Options{DSN: c.DSN, Keyring: kr, OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it := store.Item{Tenant: "t1", User: "alice", ItemID: "i1", State: store.StateOK, CreatedAt: time.Now()}
	if err := db.SaveItem(it, "tok"); err != nil {
		t.Fatal(err)
	}
	enqueue := func(body string) error {
		_, _, err := db.Enqueue(context.Background(), store.Entry{Tenant: "t1", Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body))})
		return err
	}
	if err := enqueue("before"); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	checks := map[string]error{
		"Enqueue":    enqueue("during"),
		"SaveItem":   db.SaveItem(store.Item{Tenant: "t1", User: "alice", ItemID: "i2", CreatedAt: time.Now()}, "tok"),
		"Item":       func() error { _, err := db.Item("t1", "i1"); return err }(),
		"ProbeStore": db.ProbeStore(),
		"LeaseNext":  func() error { _, _, err := db.LeaseNext("w", time.Minute, "", nil); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with PostgreSQL down = %v, want store.ErrUnavailable", name, err)
		}
	}
	c.Start()
	var last error
	for range 50 { // bounded: the pool reconnects on the next operation
		if last = enqueue("after"); last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("Enqueue after PostgreSQL returned = %v, want recovery", last)
	}
	if tok, err := db.AccessToken("t1", "alice", "i1"); err != nil || tok != "tok" {
		t.Fatalf("AccessToken after recovery = %q, %v", tok, err)
	}
	if n, err := db.QueueLen(); err != nil || n != 2 {
		t.Fatalf("QueueLen after recovery = %d, %v, want 2", n, err)
	}
}

// A row of sc_link_sessions whose user_id column was changed to alice's,
// or whose record was copied under another token's hash, is refused
// (ErrCorrupt), not handed to an exchange searching alice's sessions, as
// Badger's forged link index is (store TestForgedLinkIndexRefused).
func TestTamperedLinkSessionRowRefused(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	for _, ls := range []store.LinkSession{
		{Tenant: "t1", User: "bob", LinkToken: "link-bob", CreatedAt: now, Expiration: now.Add(time.Hour)},
		{Tenant: "t1", User: "carol", LinkToken: "link-carol", CreatedAt: now, Expiration: now.Add(time.Hour)},
	} {
		if err := db.SaveLinkSession(ls); err != nil {
			t.Fatal(err)
		}
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "UPDATE sc_link_sessions SET user_id = 'alice' WHERE hash = $1", store.LinkTokenHash("link-bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "UPDATE sc_link_sessions SET rec = (SELECT rec FROM sc_link_sessions WHERE hash = $1) WHERE hash = $2",
		store.LinkTokenHash("link-bob"), store.LinkTokenHash("link-carol")); err != nil {
		t.Fatal(err)
	}
	if ls, err := db.LinkSessions("t1", "alice", 10); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("LinkSessions(alice, edited row) = %+v, %v; want ErrCorrupt", ls, err)
	}
	if ls, err := db.LinkSessionByToken("link-carol"); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("LinkSessionByToken(copied record) = %+v, %v; want ErrCorrupt", ls, err)
	}
}

// A database writer without the key cannot queue an event Safeclose would
// sign and forward: a row inserted with a framed record (CRC and all), or a
// queued row whose record was replaced by one, is not delivered and becomes
// a dead letter with the reason; the genuine entry is delivered.
func TestForgedQueueRowsNotDelivered(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	kr, err := store.NewKeyring("k1", map[string][]byte{"k1": make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 4, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	body := func(s string) store.Entry {
		return store.Entry{Tenant: "t1", Body: []byte(s), BodySHA256: sha256.Sum256([]byte(s))}
	}
	replaced, _, err := db.Enqueue(ctx, body("genuine-1"))
	if err != nil {
		t.Fatal(err)
	}
	genuine, _, err := db.Enqueue(ctx, body("genuine-2"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	forge := func(id string) []byte {
		e := body(`{"webhook_type":"TRANSACTIONS","webhook_code":"TRANSACTIONS_REMOVED"}`)
		e.ID = id
		b, err := store.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inserted := "0000000000000001" + "00000001" // sorts first
	if _, err := c.Exec(ctx, `INSERT INTO sc_queue (id, tenant, rec, next_at) VALUES ($1, 't1', $2, now())`, inserted, forge(inserted)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `UPDATE sc_queue SET rec = $2 WHERE id = $1`, replaced, forge(replaced)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(e.Body))
		if err := db.Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0] != "genuine-2" {
		t.Fatalf("delivered %q, want only %s's genuine-2", got, genuine)
	}
	dl, err := db.DeadLetters(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 2 || dl[0].ID != inserted || dl[1].ID != replaced ||
		dl[0].LastError != store.UnauthenticatedReason || dl[1].LastError != store.UnauthenticatedReason {
		t.Fatalf("dead letters = %+v; want the two forged rows with the reason", dl)
	}
}

// A reverse migration (PostgreSQL → Badger) keeps queued webhooks
// authenticated: with the keyring they are authenticated again with their
// columns; without one (nothing to check them with) they go as stored.
// Either way the Badger side delivers them with its keys.
func TestExportKeepsQueueAuthentication(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	kr, err := store.NewKeyring("k1", map[string][]byte{"k1": make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	served, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 4, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("genuine")
	if _, _, err := served.Enqueue(ctx, store.Entry{Tenant: "t1", Body: b, BodySHA256: sha256.Sum256(b)}); err != nil {
		t.Fatal(err)
	}
	served.Close()
	for _, side := range []struct {
		name string
		kr   *store.Keyring
	}{{"with the keyring", kr}, {"without keys", nil}} {
		t.Run(side.name, func(t *testing.T) {
			from, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 2, Keyring: side.kr})
			if err != nil {
				t.Fatal(err)
			}
			defer from.Close()
			dir := t.TempDir()
			to, err := store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			if err := from.Export(func(r store.Record) error {
				if r.Kind == store.RecQueue && store.EntryKeyID(r.Value) != "k1" {
					t.Errorf("queue record %s exported without its authentication", r.Key)
				}
				_, err := to.Import(r)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			to.Close()
			db, err := store.Open(store.Options{Dir: dir, Keyring: kr, MinFreeBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
			if err != nil || !ok || string(e.Body) != "genuine" {
				t.Fatalf("LeaseNext on the Badger side = %q, %v, %v; want the genuine webhook", e.Body, ok, err)
			}
		})
	}
}

// A damaged queue row (it fails its frame check) does not stall leasing:
// it becomes a dead letter saying so, listed, and the next entry is
// leased; a replay refuses it.
func TestDamagedQueueRowDeadLettered(t *testing.T) {
	db, ids := damagedFirstRow(t, "first", "second")
	e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok || string(e.Body) != "second" {
		t.Fatalf("LeaseNext past a damaged row = %q, %v, %v; want the next entry", e.Body, ok, err)
	}
	dl, err := db.DeadLetters(10)
	if err != nil || len(dl) != 1 || dl[0].ID != ids[0] || dl[0].Tenant != "t1" || !strings.HasPrefix(dl[0].LastError, "damaged record") {
		t.Fatalf("DeadLetters = %+v, %v; want the damaged row, saying so", dl, err)
	}
	if err := db.Replay(ids[0], true); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Replay(damaged) = %v, want ErrCorrupt", err)
	}
}

// Mid-rotation on replicas: B has not been given the new key k1 yet, A has.
// One LeaseNext by B holds one entry it cannot check, not all of the
// tenant's: A delivers the rest at once.
func TestReplicaWithoutKeyHoldsOneEntryACall(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	k0, k1 := make([]byte, 32), make([]byte, 32)
	k1[0] = 1
	open := func(kr *store.Keyring) *pg.DB {
		db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 4, Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	both, err := store.NewKeyring("k1", map[string][]byte{"k1": k1, "k0": k0})
	if err != nil {
		t.Fatal(err)
	}
	old, err := store.NewKeyring("k0", map[string][]byte{"k0": k0})
	if err != nil {
		t.Fatal(err)
	}
	a, b := open(both), open(old)
	for i := range 20 {
		body := []byte(fmt.Sprint("under-k1-", i))
		if _, _, err := a.Enqueue(ctx, store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := b.LeaseNext("b", time.Minute, "", nil); err != nil || ok {
		t.Fatalf("B leased %v, %v; want nothing (it lacks k1)", ok, err)
	}
	n := 0
	for {
		e, ok, err := a.LeaseNext("a", time.Minute, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if err := a.Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 19 {
		t.Fatalf("after one LeaseNext by the replica without k1, the one with it delivered %d of 20 at once; want 19 (one held)", n)
	}
}

// A damaged queue record does not stop a migration either way: it is
// carried as a dead letter, as it is, and listed as damaged on the other
// side.
func TestMigrateCarriesDamagedQueueRecords(t *testing.T) {
	ctx := context.Background()
	src, ids := damagedFirstRow(t, "damaged", "fine")
	// PostgreSQL → Badger.
	dir := t.TempDir()
	bdb, err := store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := src.Export(func(r store.Record) error { _, err := bdb.Import(r); return err }); err != nil {
		t.Fatalf("export with a damaged row: %v", err)
	}
	dl, err := bdb.DeadLetters(10)
	if err != nil || len(dl) != 1 || dl[0].ID != ids[0] || !strings.HasPrefix(dl[0].LastError, "damaged record") {
		t.Fatalf("Badger dead letters = %+v, %v; want the damaged record", dl, err)
	}
	// And back into an empty PostgreSQL database.
	dst, err := pg.Open(ctx, pg.Options{DSN: testDSN(t), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := bdb.Export(func(r store.Record) error { _, err := dst.Import(r); return err }); err != nil {
		t.Fatalf("import with a damaged dead letter: %v", err)
	}
	dl, err = dst.DeadLetters(10)
	if err != nil || len(dl) != 1 || dl[0].ID != ids[0] || !strings.HasPrefix(dl[0].LastError, "damaged record") {
		t.Fatalf("PostgreSQL dead letters = %+v, %v; want the damaged record", dl, err)
	}
	if e, ok, err := dst.LeaseNext("w", time.Minute, "", nil); err != nil || !ok || string(e.Body) != "fine" {
		t.Fatalf("LeaseNext after the round trip = %q, %v, %v; want the fine entry", e.Body, ok, err)
	}
}

// damagedFirstRow opens a new database without keys, queues one entry per
// body for tenant t1, and flips a byte inside the first entry's framed
// record with SQL, so that it fails its CRC. It returns the store and the
// entries' ids.
func damagedFirstRow(t *testing.T, bodies ...string) (*pg.DB, []string) {
	t.Helper()
	dsn := testDSN(t)
	ctx := context.Background()
	db, err := pg.Open(ctx, pg.Options{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var ids []string
	for _, body := range bodies {
		id, _, err := db.Enqueue(ctx, store.Entry{Tenant: "t1", Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `UPDATE sc_queue SET rec = set_byte(rec, length(rec) - 2, get_byte(rec, length(rec) - 2) # 32) WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	return db, ids
}
