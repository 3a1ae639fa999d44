package pg

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// Two replicas on one database whose clocks disagree by two minutes (NTP
// not running on one of them) still agree on every time they share: a
// lease, a retry time, a dedupe marker's and a plugin key's expiry are
// decided by the database's clock, not by each replica's own. Before, the
// replica ahead took the other's live lease at once (both delivered the
// event), the one behind left the other's retries alone for two minutes,
// and a key or marker one wrote for less than the skew was already expired
// for the other (a one-time nonce or a duplicate webhook went through).
func TestSkewedReplicas(t *testing.T) {
	const skew = 2 * time.Minute
	dsn := pgtest.Database(t)
	open := func(now func() time.Time) *DB {
		db, err := Open(context.Background(), Options{DSN: dsn, MaxConns: 4, DedupeTTL: time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	aNow := func() time.Time { return time.Now().Add(skew) }
	a, b := open(aNow), open(time.Now) // a's clock is ahead of b's

	t.Run("lease", func(t *testing.T) {
		enqueueBody(t, b, "lease", "x")
		e, ok, err := b.LeaseNext("b", 30*time.Second, "", nil)
		if err != nil || !ok {
			t.Fatalf("b.LeaseNext = %v, %v", ok, err)
		}
		if got, ok, err := a.LeaseNext("a", 30*time.Second, "", nil); ok || err != nil {
			t.Fatalf("a.LeaseNext while b holds the lease = %s, %v, %v; want nothing due", got.ID, ok, err)
		}
		if err := b.Extend(e.ID, e.LeaseToken, 30*time.Second); err != nil {
			t.Fatalf("b.Extend = %v", err)
		}
		if got, ok, err := a.LeaseNext("a", 30*time.Second, "", nil); ok || err != nil {
			t.Fatalf("a.LeaseNext after b extended = %s, %v, %v; want nothing due", got.ID, ok, err)
		}
		if err := b.Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatalf("b.Complete = %v", err)
		}
	})
	t.Run("retry", func(t *testing.T) {
		enqueueBody(t, a, "retry", "x")
		e, ok, err := a.LeaseNext("a", 30*time.Second, "", nil)
		if err != nil || !ok {
			t.Fatalf("a.LeaseNext = %v, %v", ok, err)
		}
		// Due again a second ago, on a's clock (a reading of the database's
		// clock is good to well within a second).
		if err := a.Retry(e.ID, e.LeaseToken, aNow().Add(-time.Second), "502"); err != nil {
			t.Fatal(err)
		}
		got, ok, err := b.LeaseNext("b", 30*time.Second, "", nil)
		if err != nil || !ok || got.ID != e.ID {
			t.Fatalf("b.LeaseNext after a's retry due a second ago = %s, %v, %v; want %s", got.ID, ok, err, e.ID)
		}
		if err := b.Complete(got.ID, got.LeaseToken); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dedupe", func(t *testing.T) {
		body := []byte("the same webhook")
		e := store.Entry{Tenant: "dedupe", Body: body, BodySHA256: sha256.Sum256(body)}
		first, dup, err := b.Enqueue(context.Background(), e)
		if err != nil || dup {
			t.Fatalf("b.Enqueue = %v, %v", dup, err)
		}
		id, dup, err := a.Enqueue(context.Background(), e)
		if err != nil || !dup || id != first {
			t.Fatalf("a.Enqueue of the same body = %s, %v, %v; want duplicate of %s", id, dup, err, first)
		}
	})
	t.Run("kv", func(t *testing.T) {
		ctx := context.Background()
		if ok, err := b.KVSet(ctx, "kv", []byte("nonce"), []byte("used"), time.Minute, 10); !ok || err != nil {
			t.Fatalf("b.KVSet = %v, %v", ok, err)
		}
		if _, found, err := a.KVGet(ctx, "kv", []byte("nonce")); !found || err != nil {
			t.Fatalf("a.KVGet of b's unexpired key = %v, %v; want found", found, err)
		}
	})
}
