package pg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// A version 2 database with dedupe markers migrates to version 3 (the
// expiry index as BRIN), keeps its markers, and Sweep then deletes the
// expired ones and only those.
func TestMigrateDedupeExpiryBRIN(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE sc_schema_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"migrations/0001_init.sql", "migrations/0002_plugin_kv.sql"} {
		sql, err := migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, string(sql)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO sc_schema_version (version) VALUES ($1)", v+1); err != nil {
			t.Fatal(err)
		}
	}
	// Rows hold the database's time (clock.go): one marker expired an hour
	// ago, one expires in an hour.
	if _, err := c.Exec(ctx, `INSERT INTO sc_dedupe (tenant, body_sha256, entry_id, expires_at) VALUES
		('t1', '\x01', 'old', now() - interval '1 hour'), ('t1', '\x02', 'new', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}

	db, err := Open(ctx, Options{DSN: dsn, MaxConns: 2, DedupeTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	var am string
	if err := c.QueryRow(ctx, "SELECT max(version) FROM sc_schema_version").Scan(&v); err != nil || v != SchemaVersion() || v < 3 {
		t.Fatalf("schema version = %d, %v; want %d (at least 3)", v, err, SchemaVersion())
	}
	if err := c.QueryRow(ctx, `SELECT a.amname FROM pg_class i JOIN pg_am a ON a.oid = i.relam
		WHERE i.relname = 'sc_dedupe_expiry'`).Scan(&am); err != nil || am != "brin" {
		t.Fatalf("sc_dedupe_expiry access method = %q, %v; want brin", am, err)
	}
	body := []byte("fresh")
	if _, dup, err := db.Enqueue(ctx, store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body)}); err != nil || dup {
		t.Fatalf("Enqueue = dup %v, %v", dup, err)
	}
	if err := db.Sweep(); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT entry_id FROM sc_dedupe WHERE entry_id IN ('old', 'new') ORDER BY entry_id")
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM sc_dedupe").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != "new" || n != 2 {
		t.Fatalf("after Sweep: %v of old/new and %d markers; want [new] and 2 (new, fresh)", left, n)
	}
}

// Version 4: queue records up to a page stay inline and uncompressed
// (toast_tuple_target), and a webhook-sized record is stored so.
func TestMigrateQueueInlineRecords(t *testing.T) {
	dsn := pgtest.Database(t)
	ctx := context.Background()
	db, err := Open(ctx, Options{DSN: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var opts []string
	if err := c.QueryRow(ctx, "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = 'sc_queue'").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(opts, "toast_tuple_target=8160") {
		t.Fatalf("sc_queue reloptions = %v; want toast_tuple_target=8160", opts)
	}
	body := bytes.Repeat([]byte(`{"webhook_type":"ITEM","n":12345}`), 80) // ~2.6 KB, ~3.5 KB as a record
	if _, _, err := db.Enqueue(ctx, store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body)}); err != nil {
		t.Fatal(err)
	}
	var compressed *string
	var stored, raw int
	if err := c.QueryRow(ctx, "SELECT pg_column_compression(rec), pg_column_size(rec), octet_length(rec) FROM sc_queue").Scan(&compressed, &stored, &raw); err != nil {
		t.Fatal(err)
	}
	if compressed != nil || raw < 3000 || stored < raw {
		t.Fatalf("a %d-byte record is stored in %d bytes, compression %v; want it inline and uncompressed", raw, stored, compressed)
	}
}
