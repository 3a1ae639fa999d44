package pg

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// adminConn is a connection of the test's own to dsn's database.
func adminConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func enqueueOne(db *DB, body string) error {
	_, _, err := db.Enqueue(context.Background(), store.Entry{Tenant: "t", Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body))})
	return err
}

// A statement_timeout (or lock_timeout) set on the server, shorter than
// the operation timeout, cancels a statement that waits for a lock another
// session holds. That is the database being unavailable for the moment,
// as the operation timeout is: store.ErrUnavailable (503, Plaid retries),
// for every caller of the batch at once. It was an SQL error: a 500, and
// the writer ran the batch again one statement at a time, each waiting out
// the server's timeout once more, so the last caller of a 16-write batch
// waited ≈5 s behind one lock, and a full batch of 256 for over a minute.
func TestServerStatementTimeoutIsUnavailable(t *testing.T) {
	dsn := pgtest.Database(t)
	ac := adminConn(t, dsn)
	mustExec(t, ac, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = 300', current_database()); END$$")
	const opTimeout = 2 * time.Second
	db, err := Open(context.Background(), Options{DSN: dsn, MaxConns: 4, OpTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	es := leaseN(t, db, "t", 16)
	ctx := context.Background()
	tx, err := ac.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE sc_queue, sc_dedupe IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Go(func() {
			start := time.Now()
			var err error
			name := "Extend"
			if i%4 == 3 {
				name, err = "Enqueue", enqueueOne(db, fmt.Sprint("locked-", i))
			} else {
				err = db.Extend(e.ID, e.LeaseToken, time.Minute)
			}
			if d := time.Since(start); d > opTimeout+time.Second {
				t.Errorf("%s behind a lock took %v, want at most the operation timeout (%v) and a second", name, d.Round(time.Millisecond), opTimeout)
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s behind a lock = %v, want store.ErrUnavailable", name, err)
			}
		})
	}
	wg.Wait()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Extend(es[0].ID, es[0].LeaseToken, time.Minute); err != nil {
		t.Fatalf("Extend after the lock = %v", err)
	}
	if err := enqueueOne(db, "after"); err != nil {
		t.Fatalf("Enqueue after the lock = %v", err)
	}
}

// A database that refuses writes (default_transaction_read_only, as a
// failover or a disk-full guard sets it) answers every write
// store.ErrUnavailable, and the store writes again as soon as it is
// writable. Sessions started while it was read-only keep that default for
// their life when it was set per database or role (ALTER DATABASE … SET):
// the pool kept them, so every write on them failed for up to the
// connections' lifetime (an hour) after the database was writable again,
// and as a 500 (SQLSTATE 25006).
func TestReadOnlyDatabase(t *testing.T) {
	db, dsn := openTest(t)
	es := leaseN(t, db, "t", 4)
	ac := adminConn(t, dsn)
	mustExec(t, ac, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END$$")
	// A failover: the pool's connections are lost and come back read-only.
	mustExec(t, ac, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	for range 3 { // the first may meet a terminated connection
		_ = db.Extend(es[0].ID, es[0].LeaseToken, time.Minute)
	}
	checks := map[string]func() error{
		"Extend":     func() error { return db.Extend(es[0].ID, es[0].LeaseToken, time.Minute) },
		"Enqueue":    func() error { return enqueueOne(db, "read-only") },
		"ProbeStore": db.ProbeStore,
	}
	for name, f := range checks {
		if err := f(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a read-only database = %v, want store.ErrUnavailable", name, err)
		}
	}
	mustExec(t, ac, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I RESET default_transaction_read_only', current_database()); END$$")
	deadline := time.Now().Add(3 * time.Second)
	for name, f := range map[string]func() error{
		"Extend":  func() error { return db.Extend(es[1].ID, es[1].LeaseToken, time.Minute) },
		"Enqueue": func() error { return enqueueOne(db, "writable") },
	} {
		for {
			err := f()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s 3 s after the database is writable again = %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
