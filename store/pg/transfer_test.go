package pg

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// Export (what `migrate -reverse` copies) is one snapshot: with replicas
// still running, rows committed by other transactions after it began are
// not in the copy, and those it began with are all there, so no item comes
// without its owner record or the other way round. Each table read by a
// query of its own combined moments: an item deleted between the items and
// the owners tables came without its owner, one saved then came as an
// owner without its item, and queue entries enqueued or delivered
// meanwhile came or went.
func TestExportIsOneSnapshot(t *testing.T) {
	dsn := pgtest.Database(t)
	kr, err := store.ParseKeyring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := Open(ctx, Options{DSN: dsn, MaxConns: 4, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	save := func(id string) {
		t.Helper()
		if err := db.SaveItem(store.Item{Tenant: "t1", User: "alice", ItemID: id, State: store.StateOK, CreatedAt: now}, "access-"+id); err != nil {
			t.Fatal(err)
		}
	}
	enqueue := func(body string) string {
		t.Helper()
		id, _, err := db.Enqueue(ctx, store.Entry{Tenant: "t1", Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body))})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	save("a")
	save("b")
	q1 := enqueue("q1")

	// Another replica's writes, each committed while the export runs: after
	// the first table, and between the items and the owners tables.
	var fired []string
	db.afterExportTable = func(sql string) {
		switch {
		case len(fired) == 0:
			fired = append(fired, "first")
			save("early")
			enqueue("q2")
		case strings.Contains(sql, "FROM sc_items"):
			fired = append(fired, "items")
			save("late")
			if err := db.DeleteItem("t1", "a"); err != nil {
				t.Error(err)
			}
			e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
			if err != nil || !ok || e.ID != q1 {
				t.Errorf("LeaseNext = %v, %v, %v, want %s", e.ID, ok, err, q1)
				return
			}
			if err := db.Complete(e.ID, e.LeaseToken); err != nil {
				t.Error(err)
			}
		}
	}

	got := map[string][]string{}
	if err := db.Export(func(r store.Record) error {
		got[r.Kind] = append(got[r.Kind], r.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.afterExportTable = nil
	if !slices.Equal(fired, []string{"first", "items"}) {
		t.Fatalf("the writes ran at %v, want after the first and the items tables", fired)
	}
	for kind, keys := range got {
		slices.Sort(keys)
		got[kind] = keys
	}
	want := map[string][]string{
		store.RecItem:  {"t1\x00a", "t1\x00b"},
		store.RecOwner: {"a", "b"},
		store.RecQueue: {q1},
	}
	for kind, w := range want {
		if !slices.Equal(got[kind], w) {
			t.Errorf("Export's %s records = %q, want %q (the store as the export began)", kind, got[kind], w)
		}
	}

	// The writes did happen: a second export sees them.
	got = map[string][]string{}
	if err := db.Export(func(r store.Record) error {
		got[r.Kind] = append(got[r.Kind], r.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got[store.RecOwner])
	if w := []string{"b", "early", "late"}; !slices.Equal(got[store.RecOwner], w) {
		t.Errorf("a second Export's owner records = %q, want %q", got[store.RecOwner], w)
	}
	if len(got[store.RecQueue]) != 1 || got[store.RecQueue][0] == q1 {
		t.Errorf("a second Export's queue records = %q, want q2's alone", got[store.RecQueue])
	}
}
