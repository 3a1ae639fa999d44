package pg_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/internal/cputime"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

func benchDB(b *testing.B, kr *store.Keyring) *pg.DB {
	db, err := pg.Open(context.Background(), pg.Options{DSN: pgtest.Database(b), Keyring: kr, MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkPGEnqueue is store.BenchmarkEnqueue on PostgreSQL: durable intake
// (entry + dedupe marker in one committed transaction) from 16×GOMAXPROCS
// senders; compare writes/s with the Badger figure of the same run.
func BenchmarkPGEnqueue(b *testing.B) {
	db := benchDB(b, nil)
	body := make([]byte, 1024)
	var n atomic.Uint64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer() // opening the store (creating a database) is not intake
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := store.Entry{Tenant: "t", Body: body, ReceivedAt: time.Now()}
			binary.LittleEndian.PutUint64(e.BodySHA256[:], n.Add(1))
			if _, _, err := db.Enqueue(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkPGSaveItem is store.BenchmarkSaveItem on PostgreSQL: one exchange's
// save (sealed token, owner index, in one committed transaction); p99-us is
// its 99th percentile latency.
func BenchmarkPGSaveItem(b *testing.B) {
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		b.Fatal(err)
	}
	db := benchDB(b, kr)
	i := 0
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		i++
		it := store.Item{Tenant: "t", User: "u", ItemID: "item-" + strconv.Itoa(i), State: store.StateOK, CreatedAt: time.Now()}
		t0 := time.Now()
		if err := db.SaveItem(it, "access-sandbox-x"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(p99(lat), "p99-us")
}

// p99 is the 99th percentile of lat in microseconds.
func p99(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[len(lat)*99/100]) / float64(time.Microsecond)
}

// BenchmarkPGLeaseNext is store.BenchmarkLeaseNext on PostgreSQL: leasing
// one entry (and releasing it, so the queue keeps its size) with 10 and with
// 100,000 queued entries over three tenants. Issue 12: both should cost the
// same, so a backlog after an outage does not slow each lease down.
func BenchmarkPGLeaseNext(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run("queued="+strconv.Itoa(n), func(b *testing.B) {
			db := benchDB(b, nil)
			var next atomic.Uint64
			fill := make(chan struct{}, 32)
			done := make(chan error, n)
			for range n {
				fill <- struct{}{}
				go func() {
					defer func() { <-fill }()
					k := next.Add(1)
					e := store.Entry{Tenant: "t" + strconv.Itoa(int(k%3)), Body: make([]byte, 512), ReceivedAt: time.Now()}
					binary.LittleEndian.PutUint64(e.BodySHA256[:], k)
					_, _, err := db.Enqueue(context.Background(), e)
					done <- err
				}()
			}
			for range n {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			last := ""
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				e, ok, err := db.LeaseNext("w", time.Minute, last, nil)
				if err != nil || !ok {
					b.Fatalf("LeaseNext = %v, %v", ok, err)
				}
				last = e.Tenant
				if err := db.Release(e.ID, e.LeaseToken); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPGDrain drains b.N queued entries as a webhook worker does
// (proxy/webhook_worker.go): one leaser, each entry's outcome (its orphan
// record, then Complete) written in the background, at most 16 at once.
// Besides the rate, which a busy machine moves, it reports what it does
// not: the write transactions (xacts, each a commit and a WAL flush) and WAL
// bytes per entry, and the CPU per entry of this process and of the
// database's server processes (read from /proc; issue 11: the worker's
// PostgreSQL work per entry is what slowed intake while it drained).
func BenchmarkPGDrain(b *testing.B) {
	dsn := pgtest.Database(b)
	db, err := pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ctx := context.Background()
	fill := make(chan struct{}, 64)
	errs := make(chan error, b.N)
	for i := range b.N {
		fill <- struct{}{}
		go func() {
			defer func() { <-fill }()
			e := store.Entry{Tenant: "t", Body: make([]byte, 512), ReceivedAt: time.Now()}
			binary.LittleEndian.PutUint64(e.BodySHA256[:], uint64(i))
			_, _, err := db.Enqueue(ctx, e)
			errs <- err
		}()
	}
	for range b.N {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	xact0, wal0, srv0 := serverState(b, c)
	cpu0 := cputime.Process()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	writing := make(chan struct{}, 16)
	for range b.N {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok {
			b.Fatalf("LeaseNext = %v, %v", ok, err)
		}
		writing <- struct{}{}
		wg.Go(func() {
			defer func() { <-writing }()
			if _, err := db.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: e.Tenant, ItemID: e.ID}); err != nil {
				b.Error(err)
			}
			if err := db.Complete(e.ID, e.LeaseToken); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	cpu := cputime.Process() - cpu0
	xact1, wal1, srv1 := serverState(b, c)
	n := float64(b.N)
	b.ReportMetric(n/el.Seconds(), "entries/s")
	b.ReportMetric(float64(xact1-xact0-1)/n, "xacts/entry")
	b.ReportMetric(float64(wal1-wal0)/n, "WAL-B/entry")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/entry")
	if srv0 >= 0 && srv1 >= 0 {
		b.ReportMetric(float64((srv1-srv0).Microseconds())/n, "pg-cpu-µs/entry")
	}
}

// serverState reads the next transaction id (taking one), the WAL position,
// and the CPU time of the server processes serving c's database (its pool;
// -1 when /proc cannot tell).
func serverState(b *testing.B, c *pgx.Conn) (xact, wal int64, cpu time.Duration) {
	ctx := context.Background()
	if err := c.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint, pg_current_wal_lsn() - '0/0'::pg_lsn").Scan(&xact, &wal); err != nil {
		b.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	for _, pid := range pids {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			return xact, wal, -1
		}
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14 and 15
		sy, _ := strconv.ParseInt(f[12], 10, 64)
		cpu += time.Duration(ut+sy) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	return xact, wal, cpu
}
