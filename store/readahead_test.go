package store

import (
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// storedEntry reads and decodes id's queue record as committed.
func storedEntry(t *testing.T, db *DB, id string) Entry {
	t.Helper()
	var e Entry
	if err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("q/" + id))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) (err error) { e, err = DecodeEntry(v); return err })
	}); err != nil {
		t.Fatalf("reading q/%s: %v", id, err)
	}
	return e
}

func sameRecord(a, b Entry) bool {
	return a.ID == b.ID && a.Tenant == b.Tenant && string(a.Body) == string(b.Body) &&
		slices.Equal(a.Headers, b.Headers) && a.BodySHA256 == b.BodySHA256 && a.Attempts == b.Attempts &&
		a.LastError == b.LastError && a.ReceivedAt.Equal(b.ReceivedAt) && a.NextAt.Equal(b.NextAt)
}

// freshCount is how many entries hold a copy in memory.
func freshCount(db *DB) int {
	db.qi.mu.Lock()
	defer db.qi.mu.Unlock()
	n := 0
	for _, q := range db.qi.ents {
		if q.fresh != nil {
			n++
		}
	}
	return n
}

// Issue 12: a backlog read from disk (none of it in memory) is read ahead in
// runs: the first lease keeps copies of the records after it, and every
// lease still hands out the record exactly as stored, oldest first within
// each tenant's turn, within half the fresh-copy budget.
func TestBacklogIsReadAhead(t *testing.T) {
	t.Parallel()
	const n = 3*aheadMax + 10
	db := fillQueue(t, n, 3)
	if c := freshCount(db); c != 0 {
		t.Fatalf("%d entries in memory after Open, want 0 (the test needs a backlog on disk)", c)
	}
	last := ""
	seen := map[string]bool{}
	for i := range n {
		e, ok, err := db.LeaseNext("w", time.Minute, last, nil)
		if err != nil || !ok {
			t.Fatalf("lease %d = %v, %v", i, ok, err)
		}
		if i == 0 {
			if c := freshCount(db); c != aheadMax {
				t.Errorf("copies kept after the first lease = %d, want %d", c, aheadMax)
			}
		}
		if db.qi.cached > db.qi.max/aheadShare {
			t.Fatalf("bytes kept = %d, over read-ahead's share %d", db.qi.cached, db.qi.max/aheadShare)
		}
		if s := storedEntry(t, db, e.ID); !sameRecord(e, s) {
			t.Fatalf("lease %d handed out\n%+v\nstored\n%+v", i, e, s)
		}
		if seen[e.ID] {
			t.Fatalf("lease %d: %s leased twice", i, e.ID)
		}
		seen[e.ID], last = true, e.Tenant
	}
	if db.qi.cached != 0 {
		t.Errorf("bytes kept once every entry is leased = %d, want 0", db.qi.cached)
	}
}

// Issue 12: a copy read ahead is kept only when it is what is committed:
// not for an entry whose outcome was written (or is being written) after
// the read began, nor for one leased, not yet due or of another tenant,
// and never past read-ahead's share of the budget.
func TestReadAheadKeepsNoStaleCopy(t *testing.T) {
	t.Parallel()
	qi := newQindex()
	now := time.Now()
	ns, until := now.UnixNano(), now.Add(time.Minute).UnixNano()
	for _, e := range [][2]string{{"a", "ta"}, {"b", "tb"}, {"c", "tc"}, {"d", "td"}, {"e", "te"}, {"f", "tf"}, {"g", "tg"}, {"h", "th"}} {
		qi.add(e[0], e[1], now, now)
	}
	qi.add("later", "te", now.Add(time.Hour), now)
	lease := func(tenant string, token uint64) {
		t.Helper()
		if q, _ := qi.pick(ns, until, token, "", func(n string) bool { return n == tenant }); q == nil || q.tenant != tenant {
			t.Fatalf("pick from %s = %v", tenant, q)
		}
	}
	// g's outcome (a retry, due at once) is written before the read: the
	// read sees it, so its copy is good.
	lease("tg", 1)
	qi.end(qi.begin("g", 1), true, false, now)
	// a and b are leased before the read; d is leased and stays so.
	lease("ta", 2)
	lease("tb", 3)
	lease("td", 4)
	// c's outcome is begun before the read and ends after it.
	lease("tc", 5)
	qc := qi.begin("c", 5)
	// h's lease expires (it is due again, unleased) and its holder, whose
	// token is still good, begins the outcome before the read: it is
	// still being written when the copies are kept.
	if q, _ := qi.pick(ns, ns+1, 6, "", func(n string) bool { return n == "th" }); q == nil {
		t.Fatal("pick from th = nil")
	}
	qi.promote(ns + 2)
	if qi.ents["h"].leased {
		t.Fatal("h still leased after its lease ended")
	}
	qi.begin("h", 6)
	epoch, room := qi.aheadStart("")
	if !room {
		t.Fatal("aheadStart: no room in an empty index")
	}
	// The copies a transaction begun now reads.
	copyOf := func(id, tenant string) *Entry { return &Entry{ID: id, Tenant: tenant, Body: []byte(id)} }
	es := []*Entry{copyOf("a", "ta"), copyOf("b", "tb"), copyOf("c", "tc"), copyOf("d", "td"), copyOf("e", "te"),
		copyOf("f", "other"), copyOf("g", "tg"), copyOf("h", "th"), copyOf("later", "te"), copyOf("gone", "te")}
	// Meanwhile a's outcome is written (a retry, due at once), b's is
	// begun and c's ends: each record changed after the read may have
	// seen it.
	qi.end(qi.begin("a", 2), true, false, now)
	qi.begin("b", 3)
	qi.end(qc, true, false, now)
	if kept := qi.keepAhead(epoch, ns, "later", es); kept != 2 {
		t.Errorf("keepAhead kept %d, want 2 (e, g)", kept)
	}
	// A lease before the run just read does not read it again; one past
	// it does.
	if _, ok := qi.aheadStart("b"); ok {
		t.Error("aheadStart(b) after a run read up to \"later\" = true, want false")
	}
	if _, ok := qi.aheadStart("m"); !ok {
		t.Error("aheadStart(m) past the run read = false, want true")
	}
	for id, want := range map[string]bool{"a": false, "b": false, "c": false, "d": false, "e": true, "f": false, "g": true, "h": false, "later": false} {
		if got := qi.ents[id].fresh != nil; got != want {
			t.Errorf("%s kept = %v, want %v", id, got, want)
		}
	}
	// The budget: read-ahead fills at most its share.
	qi2 := newQindex()
	qi2.max = 4 * freshSize(copyOf("x", "t"))
	var more []*Entry
	for _, id := range []string{"p", "q", "r", "s"} {
		qi2.add(id, "t", now, now)
		more = append(more, copyOf(id, "t"))
	}
	epoch, _ = qi2.aheadStart("")
	if kept := qi2.keepAhead(epoch, ns, "", more); kept != 2 || qi2.cached > qi2.max/aheadShare {
		t.Errorf("keepAhead within a budget of 4 copies kept %d (%d bytes), want 2 (half)", kept, qi2.cached)
	}
	if _, room := qi2.aheadStart(""); room {
		t.Error("aheadStart says there is room with read-ahead's share full")
	}
}
