package pg

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/safeclose/safeclose/store"
)

// ErrSchemaTooNew is a database migrated by a newer Safeclose.
var ErrSchemaTooNew = errors.New("pg: database schema is newer than this binary")

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure Open. Zero values are documented per field.
type Options struct {
	DSN       string         // required: a PostgreSQL connection string
	MaxConns  int32          // pool size; zero means 16
	Keyring   *store.Keyring // nil means no key: SaveItem answers store.ErrNoKey
	Logger    *slog.Logger   // nil means discard
	DedupeTTL time.Duration  // zero means 48h
	// Now is this replica's clock; nil means time.Now. The store measures
	// the database's clock against it at Open (and, when Now is nil, every
	// minute after) and keeps shared times in the database's (clock.go).
	Now func() time.Time
	// OpTimeout bounds each operation, so a database that stops answering
	// turns into store.ErrUnavailable rather than a hung request; zero means 5s.
	OpTimeout time.Duration
}

// DB is the PostgreSQL store. It is safe for concurrent use, also by
// several processes on one database.
type DB struct {
	pool    *pgxpool.Pool
	kr      *store.Keyring
	keyErr  error
	qg      *store.QueueGuard // queue records' checks (store/entry_auth.go)
	log     *slog.Logger
	local   func() time.Time // Options.Now
	offset  atomic.Int64     // the database's clock minus local, in ns (clock.go)
	ttl     time.Duration
	timeout time.Duration
	seq     atomic.Uint64
	closeMu sync.RWMutex
	closed  bool

	// Group commit of Enqueue (enqueue.go).
	reqs   chan *enqueueReq
	stop   chan struct{}
	commit sync.WaitGroup

	due dueList // LeaseNext's tenants with a due entry (queue.go)

	kvLocks store.TenantLocks // one KV set of a tenant at a time (kv.go)

	// Group commit of the workers' single-row writes (writes.go).
	writes chan *writeReq
	wstop  chan struct{}
	wdone  chan struct{}

	// afterExportTable, when not nil, is called by Export after each table
	// with its query: a test's way in between two tables. Nil outside tests.
	afterExportTable func(sql string)
}

var _ store.Backend = (*DB)(nil)

// Open connects, applies the embedded migrations under an advisory lock and
// checks the keyring against the database.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	resync := o.Now == nil // a caller's own clock (a test's) is measured once
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DedupeTTL == 0 {
		o.DedupeTTL = store.DefaultDedupeTTL
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 16
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, errors.New("pg: the DSN does not parse") // its text may hold a password
	}
	cfg.MaxConns = o.MaxConns
	// Every statement is planned for its own arguments and the tables as
	// they are now (planCacheMode), unless the DSN says otherwise.
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = planCacheMode
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = o.OpTimeout
	}
	cfg.AfterRelease = writable
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pg: open: %w", unavailable(err))
	}
	db := &DB{pool: pool, kr: o.Keyring, log: o.Logger, local: o.Now, ttl: o.DedupeTTL, timeout: o.OpTimeout}
	db.qg = store.NewQueueGuard(o.Keyring)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	db.seq.Store(binary.BigEndian.Uint64(seed[:]))
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.checkKeys(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.measureClock(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	db.startCommitters(1)
	db.startWriter()
	if resync {
		db.commit.Add(1) // stopped with the committers
		go db.resyncClock()
	}
	return db, nil
}

// planCacheMode is the plan_cache_mode of the pool's sessions. pgx
// prepares each statement once per connection, and PostgreSQL, after five
// executions, may keep one generic plan for it for the connection's life,
// costed on the tables as they were then. sc_queue swings from empty to
// tens of thousands of rows in seconds and is rarely analyzed meanwhile, so
// the lease's plan fixed on a near-empty queue (a bitmap scan of every
// queued row of the tenant and a sort, to take the first) was kept as the
// queue grew: 8 ms and 750 buffers a lease with 20,000 queued (issue 11).
// Planning each execution costs tens of µs on these small statements.
// It is a startup parameter: PostgreSQL 12 or newer, and a pooler in
// between must pass it; a DSN that sets plan_cache_mode wins.
const planCacheMode = "force_custom_plan"

// writable keeps a released connection in the pool unless its session
// refuses writes. A session takes default_transaction_read_only when it
// starts, and one set per database or role (ALTER DATABASE … SET, as a
// failover or a disk-full guard may do) stays with it for its life: kept,
// it would fail every write for up to the pool's connection lifetime after
// the database is writable again. PostgreSQL 14 and newer report the
// setting to the client (older ones report nothing: the connection is kept).
// While the database is read-only each operation so opens a connection.
func writable(c *pgx.Conn) bool {
	return c.PgConn().ParameterStatus("default_transaction_read_only") != "on"
}

// SchemaVersion is the newest migration this binary has.
func SchemaVersion() int {
	v, _ := latest()
	return v
}

func latest() (int, []string) {
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	v := 0
	if len(names) > 0 {
		v, _ = strconv.Atoi(strings.SplitN(strings.TrimPrefix(names[len(names)-1], "migrations/"), "_", 2)[0])
	}
	return v, names
}

// migrateLock is the pg_advisory_lock key every replica takes to migrate.
const migrateLock = 0x5afec105e

// migrate applies the migrations the database lacks, one transaction each,
// with every replica serialised by an advisory lock. A newer schema is
// refused: this binary would not know its records.
func (db *DB) migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pg: migrate: %w", unavailable(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLock)); err != nil {
		return fmt.Errorf("pg: migrate: lock: %w", mapErr(err))
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(migrateLock)) //nolint:errcheck
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS sc_schema_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("pg: migrate: %w", mapErr(err))
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sc_schema_version").Scan(&cur); err != nil {
		return fmt.Errorf("pg: migrate: %w", mapErr(err))
	}
	want, names := latest()
	if cur > want {
		return fmt.Errorf("%w: database is at version %d, this binary knows %d; upgrade Safeclose", ErrSchemaTooNew, cur, want)
	}
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
		if err != nil || v <= cur {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO sc_schema_version (version) VALUES ($1)", v)
			return err
		})
		if err != nil {
			return fmt.Errorf("pg: migrate to version %d: %w", v, mapErr(err))
		}
		db.log.Info("database schema migrated", "version", v)
	}
	return nil
}

// Close closes the pool. Calls after the first return store.ErrClosed.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return store.ErrClosed
	}
	db.closed = true // no Enqueue or write sends to the committers any more
	db.closeMu.Unlock()
	db.stopCommitters()
	db.stopWriter()
	db.closeMu.Lock() // wait for operations in flight
	defer db.closeMu.Unlock()
	db.pool.Close()
	return nil
}

// op runs fn with a bounded context, unless the store is closed, and maps
// its error to the store's sentinels.
func (db *DB) op(fn func(ctx context.Context) error) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), db.timeout)
	defer cancel()
	return mapErr(fn(ctx))
}

// tx runs fn in a transaction (see op).
func (db *DB) tx(fn func(ctx context.Context, tx pgx.Tx) error) error {
	return db.op(func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
	})
}

// mapErr turns what pgx reports into the store's sentinels: no rows is
// store.ErrNotFound, a lost or refused connection store.ErrUnavailable.
// Errors from fn that are already the store's pass through unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{store.ErrNotFound, store.ErrDuplicate, store.ErrNoKey, store.ErrKeyMismatch,
		store.ErrCorrupt, store.ErrStaleLease, store.ErrUnavailable, store.ErrClosed} {
		if errors.Is(err, s) {
			return err
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return unavailable(err)
}

// unavailable marks connection-level failures store.ErrUnavailable (503,
// so clients and Plaid retry); SQL errors from a live server stay as they are.
// A statement the server cancelled for its statement_timeout or lock_timeout
// (57014, 55P03) is a wait that ran out, as the operation timeout is: it is
// unavailable too, and the writer does not run its batch again statement by
// statement (writes.go), each waiting out the server's timeout once more.
// So is a database that refuses writes (25006: read-only after a failover,
// or a disk-full guard), and the writer does not retry each statement
// against it either.
func unavailable(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "57P"),
			pe.Code == "57014", pe.Code == "55P03", pe.Code == "25006":
		default:
			return fmt.Errorf("pg: %s (SQLSTATE %s)", pe.Message, pe.Code)
		}
		return fmt.Errorf("%w: postgresql: %w", store.ErrUnavailable, err)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed") {
		return fmt.Errorf("%w: postgresql: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("pg: %w", err)
}

// nextID returns a sortable id like Badger's: 16 hex digits of unix nanos,
// 8 of a per-process sequence that starts at random, so ids from different
// replicas do not collide.
func (db *DB) nextID(now time.Time) string {
	return fmt.Sprintf("%016x%08x", uint64(now.UnixNano()), db.seq.Add(1)&0xffffffff)
}

// Shared reports that other processes (replicas) use the database at the
// same time: an unresolved exchange intent may be one of theirs, under way.
func (db *DB) Shared() bool { return true }

// KeyStatus is nil when tokens can be sealed and opened, else
// store.ErrNoKey or store.ErrKeyMismatch.
func (db *DB) KeyStatus() error { return db.keyErr }

// HeldTotal counts the queue entries held since Open (store/entry_auth.go).
func (db *DB) HeldTotal() uint64 { return db.qg.HeldTotal() }

// checkKeys verifies each key against its canary (writing canaries for new
// keys) and that every key that sealed stored tokens is in the keyring.
func (db *DB) checkKeys(ctx context.Context) error {
	if db.kr == nil {
		db.keyErr = store.ErrNoKey
		return nil
	}
	for _, id := range db.kr.KeyIDs() {
		c, err := db.kr.Canary(id)
		if err != nil {
			return err
		}
		if _, err := db.pool.Exec(ctx, "INSERT INTO sc_keys (id, canary) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET canary = EXCLUDED.canary WHERE sc_keys.canary IS NULL", id, c); err != nil {
			return fmt.Errorf("pg: keys: %w", mapErr(err))
		}
	}
	rows, err := db.pool.Query(ctx, "SELECT id, canary, used FROM sc_keys")
	if err != nil {
		return fmt.Errorf("pg: keys: %w", mapErr(err))
	}
	type row struct {
		ID     string
		Canary []byte
		Used   bool
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return fmt.Errorf("pg: keys: %w", mapErr(err))
	}
	known := map[string]bool{}
	for _, id := range db.kr.KeyIDs() {
		known[id] = true
	}
	for _, r := range rs {
		switch {
		case known[r.ID] && r.Canary != nil && !db.kr.CheckCanary(r.ID, r.Canary):
			db.qg.MarkBad(r.ID)
			db.keyErr = fmt.Errorf("%w: key %q is not the key that sealed this data", store.ErrKeyMismatch, r.ID)
			db.log.Error("sealing key mismatch: tokens cannot be stored or read with this key", "key_id", r.ID)
		case !known[r.ID] && r.Used && db.keyErr == nil:
			db.keyErr = fmt.Errorf("%w: stored tokens are sealed with key %q, which is not in the keyring", store.ErrKeyMismatch, r.ID)
			db.log.Error("keyring lacks a key that sealed stored tokens", "key_id", r.ID)
		}
	}
	return nil
}

// Ping reports whether the database answers.
func (db *DB) Ping() error {
	return db.op(func(ctx context.Context) error { return db.pool.Ping(ctx) })
}
