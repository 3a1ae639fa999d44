package store

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Issue 9.6: link sessions are found by token (whoever owns them) and
// listed per user, newest first, only while Plaid may still report them.
func TestLinkSessions(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	t.Cleanup(func() { db.Close() })
	now := time.Now()
	for i, tok := range []string{"link-a", "link-b", "link-c"} {
		c := now.Add(time.Duration(i) * time.Minute)
		if err := db.SaveLinkSession(LinkSession{Tenant: "t1", User: "alice", LinkToken: tok, CreatedAt: c, Expiration: c.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-8 * time.Hour)
	if err := db.SaveLinkSession(LinkSession{Tenant: "t1", User: "alice", LinkToken: "link-old", CreatedAt: old, Expiration: old.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveLinkSession(LinkSession{Tenant: "t1", User: "bob", LinkToken: "link-bob", CreatedAt: now, Expiration: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ls, err := db.LinkSessions("t1", "alice", 2)
	if err != nil || len(ls) != 2 || ls[0].LinkToken != "link-c" || ls[1].LinkToken != "link-b" {
		t.Fatalf("LinkSessions(alice, 2) = %+v, %v", ls, err)
	}
	if ls, _ := db.LinkSessions("t1", "alice", 10); len(ls) != 3 {
		t.Errorf("LinkSessions(alice, 10) = %d sessions, want 3 (the expired one left out)", len(ls))
	}
	got, err := db.LinkSessionByToken("link-bob")
	if err != nil || got.User != "bob" || got.Tenant != "t1" {
		t.Errorf("LinkSessionByToken(link-bob) = %+v, %v", got, err)
	}
	if _, err := db.LinkSessionByToken("link-nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown token: %v, want ErrNotFound", err)
	}
}

// Issue 9.7: intents become orphans; an unknown-item orphan is recorded once.
func TestIntentsAndOrphans(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	t.Cleanup(func() { db.Close() })
	in, err := db.BeginExchange(Intent{Tenant: "t1", User: "alice", LinkTokenHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	done, err := db.BeginExchange(Intent{Tenant: "t1", User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.ResolveExchange(done.ID); err != nil {
		t.Fatal(err)
	}
	p, _ := db.PendingExchanges()
	if len(p) != 1 || p[0].ID != in.ID {
		t.Fatalf("pending = %+v, want alice's", p)
	}
	if err := db.OrphanIntent(in, "", "lost"); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.PendingExchanges(); len(p) != 0 {
		t.Errorf("pending after OrphanIntent = %+v", p)
	}
	for i := range 3 {
		fresh, err := db.RecordOrphan(Orphan{Kind: OrphanUnknownItem, Tenant: "t1", ItemID: "item-1"})
		if err != nil || fresh != (i == 0) {
			t.Fatalf("RecordOrphan #%d = %v, %v", i, fresh, err)
		}
	}
	os, _ := db.Orphans()
	if len(os) != 2 || os[0].User != "alice" || os[1].ItemID != "item-1" || os[1].Count != 1 {
		t.Fatalf("orphans = %+v", os)
	}
	if err := db.ForgetOrphan("t1", "item-1"); err != nil {
		t.Fatal(err)
	}
	if os, _ := db.Orphans(); len(os) != 1 {
		t.Errorf("after forget = %+v", os)
	}
}

// A user's link index lists only that user's sessions, and a session record
// is read only under its own token's hash: an index entry that lists someone
// else's session, or a record copied under another token, is refused, as
// the item index is (RATIONALE.md "Why authenticate every record"). An
// exchange searches the caller's listed sessions for the public token, so a
// forged entry would let alice exchange a public token of bob's.
func TestForgedLinkIndexRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	now := time.Now()
	if err := db.SaveLinkSession(LinkSession{Tenant: "t1", User: "bob", LinkToken: "link-bob", CreatedAt: now, Expiration: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	h := LinkTokenHash("link-bob")
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		uk := append(linkUserPrefix("t1", "alice"), "00000000000000ff"+h...)
		if err := txn.Set(uk, []byte(h)); err != nil {
			return err
		}
		return txn.Set(linkKey(LinkTokenHash("link-other")), rawGet(txn, linkKey(h)))
	})
	db = open(t, dir, nil)
	defer db.Close()
	if ls, err := db.LinkSessions("t1", "alice", 10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("LinkSessions(alice, forged index) = %+v, %v; want ErrCorrupt", ls, err)
	}
	if ls, err := db.LinkSessionByToken("link-other"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("LinkSessionByToken(moved record) = %+v, %v; want ErrCorrupt", ls, err)
	}
	if ls, err := db.LinkSessions("t1", "bob", 10); err != nil || len(ls) != 1 {
		t.Errorf("LinkSessions(bob) = %+v, %v; want bob's session", ls, err)
	}
}
