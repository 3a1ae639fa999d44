package pg

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// A large `migrate -reverse` keeps its snapshot transaction open while it
// writes each table into Badger, idle on the PostgreSQL side. A server with
// idle_in_transaction_session_timeout (a common guard) cut the copy off
// half-way. The export's own transaction lifts that timeout for itself.
func TestExportOutlastsIdleInTransactionTimeout(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L', current_database(), '200ms'); END $$")
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, Options{DSN: dsn, MaxConns: 2, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range []string{"a", "b"} {
		if err := db.SaveItem(store.Item{Tenant: "t1", User: "alice", ItemID: id, State: store.StateOK, CreatedAt: time.Now().UTC()}, "access-"+id); err != nil {
			t.Fatal(err)
		}
	}
	items := 0
	err = db.Export(func(r store.Record) error {
		time.Sleep(150 * time.Millisecond) // writing into Badger, slowly: 2×150 ms idle > 200 ms
		if r.Kind == store.RecItem {
			items++
		}
		return nil
	})
	if err != nil || items != 2 {
		t.Fatalf("Export with idle_in_transaction_session_timeout 200ms = %v, %d items; want nil, 2", err, items)
	}
}
