package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/cputime"
	"github.com/safeclose/safeclose/store"
)

// BenchmarkWorkerUnknownItem is one worker's own CPU for an entry that
// names an item nobody holds (what BenchmarkWebhookIntake's worker drains
// beside the intake): lease, process, orphan and outcome, one entry after
// another in the benchmark's goroutine, on an in-memory store so that no
// fsync and no other goroutine's work is counted. ns/op is CPU on an idle
// machine; cpu-µs/entry counts Badger's writer goroutine too.
func BenchmarkWorkerUnknownItem(b *testing.B) {
	e := startEnv(b, envConfig{webhookOpt: WebhookOptions{Workers: -1}, store: func(tb testing.TB, kr *store.Keyring) Store {
		db, err := store.Open(store.Options{InMemory: true, Keyring: kr})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { db.Close() })
		return db
	}})
	s := e.srv
	at := time.Now().UTC()
	for i := range b.N {
		body := fmt.Appendf(nil, `{"webhook_type":"ITEM","webhook_code":"WEBHOOK_UPDATE_ACKNOWLEDGED","item_id":"bench-item-%d","environment":"sandbox"}`, i)
		if _, _, err := s.db.Enqueue(context.Background(), store.Entry{Tenant: "t1", Body: body, BodySHA256: [32]byte{byte(i), byte(i >> 8), byte(i >> 16)}, ReceivedAt: at}); err != nil {
			b.Fatal(err)
		}
	}
	tr := &turns{busy: map[string]int{}, limit: 1, workers: 1}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Process()
	for range b.N {
		en, ok, err := s.lease(tr, "bench")
		if err != nil || !ok {
			b.Fatalf("lease = %v, %v", ok, err)
		}
		unk, perr := s.work(en)
		tr.done(en.Tenant)
		if unk == nil || perr != nil {
			b.Fatalf("work = %v, %v; want an unknown item", unk, perr)
		}
		s.finish(en, unk, perr)
	}
	cpu := cputime.Process() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/entry")
	if n, err := s.db.QueueLen(); err != nil || n != 0 {
		b.Fatalf("QueueLen = %d, %v; want 0", n, err)
	}
}
