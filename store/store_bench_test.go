package store

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/safeclose/safeclose/internal/cputime"
)

// BenchmarkEnqueue measures durable (synced) webhook intake from 32
// concurrent senders sharing group commits; writes/s is the figure to read.
func BenchmarkEnqueue(b *testing.B) {
	db := open(b, b.TempDir(), nil)
	defer db.Close()
	body := make([]byte, 1024)
	var n atomic.Uint64
	b.SetParallelism(16) // 16 × GOMAXPROCS senders
	b.ReportAllocs()
	b.ResetTimer() // opening the store is not intake
	start, cpu0, r0 := time.Now(), cputime.Process(), db.gs.roundCount()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := Entry{Tenant: "t", Body: body, ReceivedAt: time.Now()}
			binary.LittleEndian.PutUint64(e.BodySHA256[:], n.Add(1))
			if _, _, err := db.Enqueue(b.Context(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	// CPU per write (the whole process) is the figure to trust on a shared
	// machine; rounds/write is how well fsyncs are shared.
	b.ReportMetric(float64((cputime.Process()-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
	b.ReportMetric(float64(db.gs.roundCount()-r0)/float64(b.N), "rounds/write")
}

// BenchmarkSaveItem is one exchange's save (sealed token, owner index,
// synced); p99-us is its 99th percentile latency.
func BenchmarkSaveItem(b *testing.B) {
	db := open(b, b.TempDir(), keyring(b, k1))
	defer db.Close()
	i := 0
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		i++
		t0 := time.Now()
		if err := db.SaveItem(item("t", "u", "item-"+strconv.Itoa(i), "ins_1"), "access-sandbox-x"); err != nil {
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

func TestEnqueueBenchSetup(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	e := Entry{Tenant: "t", Body: make([]byte, 1024), BodySHA256: sha256.Sum256([]byte("x"))}
	if id, dup, err := db.Enqueue(t.Context(), e); err != nil || dup || id == "" {
		t.Fatalf("Enqueue = %q %v %v", id, dup, err)
	}
}

// BenchmarkSyncWriteBaseline is what Enqueue is compared with in the same
// run: raw Badger with SyncWrites, one transaction per 1 KiB write, from the
// same number of concurrent senders (the perf-anchors "goroutines=32" case).
func BenchmarkSyncWriteBaseline(b *testing.B) {
	bdb, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	body := make([]byte, 1024)
	var n atomic.Uint64
	b.SetParallelism(16)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := binary.LittleEndian.AppendUint64([]byte("k"), n.Add(1))
			if err := bdb.Update(func(txn *badger.Txn) error { return txn.Set(k, body) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}
