package pg_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/storetest"
)

// testDSN returns a DSN to a fresh database of its own on the test server
// (SAFECLOSE_TEST_PG_DSN), dropped after the test. Without a server the test
// skips, or fails with CI=true.
func testDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SAFECLOSE_TEST_PG_DSN")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("SAFECLOSE_TEST_PG_DSN is not set and CI=true: run the tests under scripts/with-postgres.sh")
		}
		t.Skip("SAFECLOSE_TEST_PG_DSN not set (scripts/with-postgres.sh sets it)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sctest_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

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
