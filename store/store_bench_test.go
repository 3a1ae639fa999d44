package store

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
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
	start := time.Now()
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
}

func BenchmarkSaveItem(b *testing.B) {
	db := open(b, b.TempDir(), keyring(b, k1))
	defer db.Close()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if err := db.SaveItem(item("t", "u", "item-"+strconv.Itoa(i), "ins_1"), "access-sandbox-x"); err != nil {
			b.Fatal(err)
		}
	}
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
