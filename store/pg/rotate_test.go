package pg_test

import (
	"context"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
)

// An item changed under a new primary key and then rotated: every record,
// the owner record included, must verify with the primary alone, since
// `keys rotate` then tells the operator to retire the other keys.
func TestRotateReauthenticatesOwnerOfUpdatedItem(t *testing.T) {
	dsn := testDSN(t)
	const (
		oldKey = "old:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		newKey = "new:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	)
	open := func(spec string) *pg.DB {
		t.Helper()
		kr, err := store.ParseKeyring(spec)
		if err != nil {
			t.Fatal(err)
		}
		db, err := pg.Open(context.Background(), pg.Options{DSN: dsn, MaxConns: 2, Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open(oldKey)
	it := store.Item{Tenant: "t1", User: "alice", ItemID: "item-1", State: store.StateOK, CreatedAt: time.Now().UTC()}
	if err := db.SaveItem(it, "access-1"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// The new key goes first; serve changes the item before the rotation.
	db = open(newKey + "," + oldKey)
	if _, err := db.UpdateItem("t1", "item-1", func(it *store.Item) error { it.State = store.StateLoginRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Rotate(); err != nil {
		t.Fatalf("Rotate = %v", err)
	}
	db.Close()

	// The old key retired, as Rotate's caller is told it now can be.
	db = open(newKey)
	defer db.Close()
	if err := db.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus with the primary alone = %v", err)
	}
	if tenant, user, err := db.ItemOwner("item-1"); err != nil || tenant != "t1" || user != "alice" {
		t.Fatalf("ItemOwner(item-1) after rotation = %q, %q, %v, want t1, alice, nil", tenant, user, err)
	}
	if tok, err := db.AccessToken("t1", "alice", "item-1"); err != nil || tok != "access-1" {
		t.Fatalf("AccessToken(item-1) after rotation = %q, %v", tok, err)
	}
}
