package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

func testItems(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k1"), c)
	at := c.Now()
	must(t, s.SaveItem(item("t1", "alice", "item-b", at.Add(time.Second)), "access-sandbox-b"))
	must(t, s.SaveItem(item("t1", "alice", "item-a", at), "access-sandbox-a"))
	must(t, s.SaveItem(item("t1", "bob", "item-c", at), "access-sandbox-c"))
	its, err := s.Items("t1", "alice")
	must(t, err)
	if got := fmtItems(its); got != "t1/alice/item-a t1/alice/item-b " {
		t.Fatalf("Items(t1, alice) = %q, want oldest first", got)
	}
	tok, err := s.AccessToken("t1", "alice", "item-a")
	must(t, err)
	if tok != "access-sandbox-a" {
		t.Fatalf("AccessToken = %q", tok)
	}
	_, err = s.AccessToken("t1", "bob", "item-a")
	wantErr(t, "AccessToken(other user)", err, store.ErrNotFound)
	_, err = s.Item("t2", "item-a")
	wantErr(t, "Item(other tenant)", err, store.ErrNotFound)
	tn, u, err := s.ItemOwner("item-c")
	must(t, err)
	if tn != "t1" || u != "bob" {
		t.Fatalf("ItemOwner = %s, %s", tn, u)
	}
	err = s.SaveItem(item("t2", "eve", "item-c", at), "x")
	wantErr(t, "SaveItem(other owner)", err, store.ErrDuplicate)
	must(t, s.SaveItem(item("t1", "bob", "item-c", at), "access-sandbox-c2")) // same owner: replaced
	up, err := s.UpdateItem("t1", "item-c", func(it *store.Item) error {
		it.State = store.StateLoginRequired
		it.User = "mallory" // ignored
		return nil
	})
	must(t, err)
	if up.State != store.StateLoginRequired || up.User != "bob" {
		t.Fatalf("UpdateItem = %+v", up)
	}
	got, err := s.Item("t1", "item-c")
	must(t, err)
	if got.State != store.StateLoginRequired {
		t.Fatalf("Item after update: state %s", got.State)
	}
	tok, err = s.AccessToken("t1", "bob", "item-c")
	must(t, err)
	if tok != "access-sandbox-c2" {
		t.Fatalf("AccessToken after update = %q", tok)
	}
	// A new token (update mode, Plaid's rotation) keeps the item as stored:
	// the state written above by another writer is not rolled back.
	must(t, s.SetAccessToken("t1", "bob", "item-c", "access-sandbox-c3"))
	got, err = s.Item("t1", "item-c")
	must(t, err)
	if got.State != store.StateLoginRequired || got.User != "bob" || !got.CreatedAt.Equal(at) {
		t.Fatalf("Item after SetAccessToken = %+v, want the stored fields kept", got)
	}
	tok, err = s.AccessToken("t1", "bob", "item-c")
	must(t, err)
	if tok != "access-sandbox-c3" {
		t.Fatalf("AccessToken after SetAccessToken = %q", tok)
	}
	wantErr(t, "SetAccessToken(other user)", s.SetAccessToken("t1", "alice", "item-c", "x"), store.ErrNotFound)
	wantErr(t, "SetAccessToken(other tenant)", s.SetAccessToken("t2", "bob", "item-c", "x"), store.ErrNotFound)
	wantErr(t, "SetAccessToken(missing)", s.SetAccessToken("t1", "bob", "nope", "x"), store.ErrNotFound)
	if tok, _ := s.AccessToken("t1", "bob", "item-c"); tok != "access-sandbox-c3" {
		t.Fatalf("AccessToken after refused SetAccessToken = %q", tok)
	}
	boom := errors.New("boom")
	_, err = s.UpdateItem("t1", "item-c", func(*store.Item) error { return boom })
	wantErr(t, "UpdateItem(fn fails)", err, boom)
	_, err = s.UpdateItem("t1", "nope", func(*store.Item) error { return nil })
	wantErr(t, "UpdateItem(missing)", err, store.ErrNotFound)
	must(t, s.DeleteItem("t1", "item-c"))
	_, err = s.Item("t1", "item-c")
	wantErr(t, "Item(deleted)", err, store.ErrNotFound)
	_, _, err = s.ItemOwner("item-c")
	wantErr(t, "ItemOwner(deleted)", err, store.ErrNotFound)
	wantErr(t, "DeleteItem(missing)", s.DeleteItem("t1", "item-c"), store.ErrNotFound)
	must(t, s.SaveItem(item("t2", "eve", "item-c", at), "x")) // free again
	must(t, s.Close())

	nokey := openWith(t, open, nil, c)
	wantErr(t, "SaveItem(no keyring)", nokey.SaveItem(item("t1", "x", "y", at), "z"), store.ErrNoKey)
	wantErr(t, "SetAccessToken(no keyring)", nokey.SetAccessToken("t2", "eve", "item-c", "z"), store.ErrNoKey)
	wantErr(t, "ProbeKey(no keyring)", nokey.ProbeKey(), store.ErrNoKey)
}

func testRotate(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k0"), c)
	for _, id := range []string{"i1", "i2", "i3"} {
		must(t, s.SaveItem(item("t1", "alice", id, c.Now()), "tok-"+id))
	}
	must(t, s.Close())

	// A keyring without the key that sealed stored tokens is refused.
	s = openWith(t, open, keyring(t, "k1"), c)
	wantErr(t, "KeyStatus(missing k0)", s.KeyStatus(), store.ErrKeyMismatch)
	must(t, s.Close())

	s = openWith(t, open, keyring(t, "k1", "k0"), c)
	must(t, s.KeyStatus())
	n, err := s.Rotate()
	must(t, err)
	if n != 3 {
		t.Fatalf("Rotate() = %d, want 3", n)
	}
	if n, err := s.Rotate(); err != nil || n != 0 {
		t.Fatalf("second Rotate() = %d, %v, want 0", n, err)
	}
	must(t, s.Close())

	s = openWith(t, open, keyring(t, "k1"), c) // k0 is gone now
	must(t, s.KeyStatus())
	for _, id := range []string{"i1", "i2", "i3"} {
		tok, err := s.AccessToken("t1", "alice", id)
		if err != nil || tok != "tok-"+id {
			t.Fatalf("AccessToken(%s) after rotation = %q, %v", id, tok, err)
		}
		if tn, _, err := s.ItemOwner(id); err != nil || tn != "t1" {
			t.Fatalf("ItemOwner(%s) after rotation = %q, %v", id, tn, err)
		}
	}
}

func testKeyMismatch(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k0"), c)
	must(t, s.SaveItem(item("t1", "alice", "i1", c.Now()), "tok"))
	must(t, s.Close())
	// Same id, other key bytes.
	other, err := store.NewKeyring("k0", map[string][]byte{"k0": make([]byte, 32)})
	must(t, err)
	s = openWith(t, open, other, c)
	wantErr(t, "KeyStatus(other bytes)", s.KeyStatus(), store.ErrKeyMismatch)
	wantErr(t, "SaveItem(other bytes)", s.SaveItem(item("t1", "alice", "i2", c.Now()), "tok"), store.ErrKeyMismatch)
	_, err = s.AccessToken("t1", "alice", "i1")
	if err == nil {
		t.Fatal("AccessToken with the wrong key bytes succeeded")
	}
}

func testLinkSessions(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k1"), c)
	now := c.Now()
	for i, tok := range []string{"link-1", "link-2", "link-3"} {
		must(t, s.SaveLinkSession(store.LinkSession{Tenant: "t1", User: "alice", LinkToken: tok,
			CreatedAt: now.Add(time.Duration(i) * time.Second), Expiration: now.Add(4 * time.Hour)}))
	}
	ls, err := s.LinkSessionByToken("link-2")
	must(t, err)
	if ls.User != "alice" || ls.LinkToken != "link-2" {
		t.Fatalf("LinkSessionByToken = %+v", ls)
	}
	_, err = s.LinkSessionByToken("link-9")
	wantErr(t, "LinkSessionByToken(unknown)", err, store.ErrNotFound)
	got, err := s.LinkSessions("t1", "alice", 2)
	must(t, err)
	if len(got) != 2 || got[0].LinkToken != "link-3" || got[1].LinkToken != "link-2" {
		t.Fatalf("LinkSessions(max 2) = %+v, want newest first", got)
	}
	if got, _ := s.LinkSessions("t1", "bob", 5); len(got) != 0 {
		t.Fatalf("LinkSessions(bob) = %d sessions", len(got))
	}
	// A token is never rebound to another user or tenant (a Plaid that
	// handed one out twice); saving it again for its owner is fine.
	for _, other := range []store.LinkSession{{Tenant: "t1", User: "bob"}, {Tenant: "t2", User: "alice"}} {
		other.LinkToken, other.CreatedAt, other.Expiration = "link-2", now.Add(time.Minute), now.Add(4*time.Hour)
		wantErr(t, "SaveLinkSession(a token bound to another owner)", s.SaveLinkSession(other), store.ErrDuplicate)
	}
	must(t, s.SaveLinkSession(store.LinkSession{Tenant: "t1", User: "alice", LinkToken: "link-2",
		CreatedAt: now.Add(time.Second), Expiration: now.Add(4 * time.Hour)}))
	if ls, err := s.LinkSessionByToken("link-2"); err != nil || ls.Tenant != "t1" || ls.User != "alice" {
		t.Fatalf("after refused rebinds: %+v, %v; want t1/alice", ls, err)
	}
	c.Add(4*time.Hour + store.LinkSessionTail + time.Minute)
	if got, _ := s.LinkSessions("t1", "alice", 5); len(got) != 0 {
		t.Fatalf("LinkSessions after the tail = %d sessions, want 0", len(got))
	}
}

func testIntentsOrphans(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k1"), c)
	a, err := s.BeginExchange(store.Intent{Tenant: "t1", User: "alice", LinkTokenHash: "h1"})
	must(t, err)
	c.Add(time.Second)
	b, err := s.BeginExchange(store.Intent{Tenant: "t1", User: "bob"})
	must(t, err)
	if a.ID == "" || a.ID == b.ID {
		t.Fatalf("intent ids %q, %q", a.ID, b.ID)
	}
	p, err := s.PendingExchanges()
	must(t, err)
	if len(p) != 2 || p[0].ID != a.ID {
		t.Fatalf("PendingExchanges = %+v", p)
	}
	must(t, s.ResolveExchange(a.ID))
	must(t, s.OrphanIntent(b, "item-x", "lost answer"))
	if p, _ := s.PendingExchanges(); len(p) != 0 {
		t.Fatalf("PendingExchanges after resolve = %+v", p)
	}
	fresh, err := s.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: "t1", ItemID: "item-y"})
	must(t, err)
	again, err := s.RecordOrphan(store.Orphan{Kind: store.OrphanUnknownItem, Tenant: "t1", ItemID: "item-y"})
	must(t, err)
	if !fresh || again {
		t.Fatalf("RecordOrphan = %v then %v, want true then false", fresh, again)
	}
	os, err := s.Orphans()
	must(t, err)
	if len(os) != 2 || os[0].Kind != store.OrphanLostExchange || os[0].ItemID != "item-x" || os[1].ItemID != "item-y" {
		t.Fatalf("Orphans = %+v", os)
	}
	// An operator's typo, or another tenant's name, removes nothing and
	// says so, instead of printing "forgot".
	for _, k := range [][2]string{{"t1", "item-nope"}, {"t2", "item-y"}, {"t1", ""}} {
		if err := s.ForgetOrphan(k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ForgetOrphan(%q, %q) = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	must(t, s.ForgetOrphan("t1", "item-y"))
	if os, _ := s.Orphans(); len(os) != 1 {
		t.Fatalf("Orphans after forget = %+v", os)
	}
}

func testProbes(t *testing.T, open Opener) {
	c := newClock()
	s := openWith(t, open, keyring(t, "k1"), c)
	must(t, s.ProbeStore())
	must(t, s.ProbeKey())
	must(t, s.Close())
	wantErr(t, "ProbeStore(closed)", s.ProbeStore(), store.ErrClosed)
}
