package store

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// rawUpdate edits the closed store's Badger directly, as a broken disk or an
// attacker with write access to the data directory would.
func rawUpdate(t *testing.T, dir string, fn func(txn *badger.Txn) error) {
	t.Helper()
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func rawGet(txn *badger.Txn, k []byte) []byte {
	it, err := txn.Get(k)
	if err != nil {
		panic(err)
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		panic(err)
	}
	return v
}

// Issue 9.11: changing two bytes inside an item record was served silently.
func TestTamperedItemRecordRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t", "alice", "i1", "ins_1"), "access-1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		v := rawGet(txn, itemKey("t", "i1"))
		// Two bytes: ins_1 → in_99 keeps the JSON valid.
		w := bytes.Replace(v, []byte(`"ins_1"`), []byte(`"in_99"`), 1)
		if bytes.Equal(v, w) {
			t.Fatal("institution id not found in the record")
		}
		return txn.Set(itemKey("t", "i1"), w)
	})
	var logs syncBuffer
	db, err := Open(Options{Dir: dir, Keyring: keyring(t, k1), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if it, err := db.Item("t", "i1"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Item(tampered) = %+v, %v; want ErrCorrupt", it, err)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "item_id=i1") {
		t.Errorf("integrity failure not logged with the item id:\n%s", out)
	}
	if its, err := db.Items("t", "alice"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Items(tampered) = %+v, %v; want ErrCorrupt", its, err)
	}
	if _, err := db.AccessToken("t", "alice", "i1"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AccessToken(tampered) = %v; want ErrCorrupt", err)
	}
	if _, err := db.UpdateItem("t", "i1", func(*Item) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("UpdateItem(tampered) = %v; want ErrCorrupt (and no re-authentication of forged data)", err)
	}
}

// Issue 9.11: a record moved to another key, a forged user index entry, or a
// changed owner index are refused too.
func TestMovedRecordsAndIndexesRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t", "alice", "i1", "ins_1"), "access-1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		// Alice's record copied under tenant t2, and listed for bob.
		if err := txn.Set(itemKey("t2", "i1"), rawGet(txn, itemKey("t", "i1"))); err != nil {
			return err
		}
		if err := txn.Set(userKey("t", "bob", "i1"), nil); err != nil {
			return err
		}
		// The owner index now claims bob owns i1.
		old := rawGet(txn, []byte("x/i1"))
		w := bytes.Replace(old, []byte("alice"), []byte("bob"), 1)
		if bytes.Equal(old, w) {
			t.Fatal("owner not found in the index record")
		}
		return txn.Set([]byte("x/i1"), w)
	})
	db = open(t, dir, keyring(t, k1))
	defer db.Close()
	if it, err := db.Item("t2", "i1"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Item(moved record) = %+v, %v; want ErrCorrupt", it, err)
	}
	if its, err := db.Items("t", "bob"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Items(bob, forged index) = %+v, %v; want ErrCorrupt", its, err)
	}
	if err := db.SaveItem(item("t", "bob", "i1", "ins_1"), "access-bob"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("SaveItem over a forged owner index = %v; want ErrCorrupt", err)
	}
	if tok, err := db.AccessToken("t", "alice", "i1"); err != nil || tok != "access-1" {
		t.Errorf("AccessToken(alice) = %q, %v", tok, err)
	}
}

// Issue 9.11: rotation re-authenticates records, so the old key can go.
func TestRotateReauthenticates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t", "u", "a", "ins_1"), "access-a"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, dir, keyring(t, k2+","+k1))
	if n, err := db.Rotate(); err != nil || n != 1 {
		t.Fatalf("Rotate = %d, %v; want 1", n, err)
	}
	if n, err := db.Rotate(); err != nil || n != 0 {
		t.Fatalf("second Rotate = %d, %v; want 0", n, err)
	}
	db.Close()
	db = open(t, dir, keyring(t, k2))
	defer db.Close()
	if it, err := db.Item("t", "a"); err != nil || it.InstitutionID != "ins_1" {
		t.Errorf("Item after rotation = %+v, %v", it, err)
	}
	if err := db.SaveItem(item("t", "u", "a", "ins_1"), "access-a2"); err != nil {
		t.Errorf("SaveItem after rotation (owner index re-authenticated?) = %v", err)
	}
}

// Issue 9.11: a flipped byte anywhere in a queue record is refused, never misparsed.
func TestQueueRecordFlipRefused(t *testing.T) {
	t.Parallel()
	b, err := EncodeEntry(Entry{ID: "0001", Tenant: "t", Body: []byte(`{"webhook_code":"X"}`), Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x20} {
			c := bytes.Clone(b)
			c[i] ^= x
			if e, err := DecodeEntry(c); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeEntry(byte %d ^ %#x) = %+v, %v; want ErrCorrupt", i, x, e, err)
			}
		}
	}
	if _, err := DecodeEntry(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodeEntry(truncated) = %v; want ErrCorrupt", err)
	}
}

// Issue 9.11: without the key that authenticated them, items are not served
// unchecked.
func TestItemsUnreadableWithoutTheirKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t", "u", "a", "ins_1"), "access-a"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, c := range []struct {
		name string
		kr   *Keyring
		want error
	}{{"no key", nil, ErrNoKey}, {"wrong key", keyring(t, k1bad), ErrKeyMismatch}, {"other key", keyring(t, k2), ErrKeyMismatch}} {
		db := open(t, dir, c.kr)
		if its, err := db.Items("t", "u"); !errors.Is(err, c.want) {
			t.Errorf("%s: Items = %+v, %v; want %v", c.name, its, err, c.want)
		}
		db.Close()
	}
}

func FuzzOpenRecord(f *testing.F) {
	kr, err := ParseKeyring(k1)
	if err != nil {
		f.Fatal(err)
	}
	db := &DB{kr: kr}
	bkey := []byte("i/t\x00a")
	good := kr.authenticate(bkey, []byte(`{"item_id":"a"}`))
	f.Add(good)
	f.Add([]byte{authVersion, 2, 'k', '1'})
	f.Fuzz(func(t *testing.T, rec []byte) {
		p, _, err := db.openRecord(bkey, rec)
		if err == nil && !bytes.Equal(rec, good) && !bytes.Equal(kr.authenticate(bkey, p), rec) {
			t.Fatalf("accepted a record the key did not make: %q", rec)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for Badger's and our goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Issue 9.11: a damaged queue record is moved aside, and the entries after it
// (any tenant's) are still leased: one flipped byte must not stall the queue.
func TestDamagedQueueEntryMovedAsideQueueGoesOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	var ids []string
	for _, e := range []Entry{entry("a", "a1"), entry("b", "b1")} {
		id, _, err := db.Enqueue(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	db.Close()
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		k := []byte("q/" + ids[0])
		v := bytes.Clone(rawGet(txn, k))
		v[len(v)-macSize-2] ^= 0x20 // in the framed entry, before the MAC
		return txn.Set(k, v)
	})
	db = open(t, dir, keyring(t, k1))
	defer db.Close()
	e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
	if err != nil || !ok || string(e.Body) != "b1" {
		t.Fatalf("LeaseNext after a damaged entry = %q, %v, %v; want b1", e.Body, ok, err)
	}
	if err := db.view(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte("q/" + ids[0])); !errors.Is(err, badger.ErrKeyNotFound) {
			t.Errorf("damaged entry still in q/: %v", err)
		}
		_, err := txn.Get([]byte("qc/" + ids[0]))
		return err
	}); err != nil {
		t.Errorf("damaged entry not kept in qc/: %v", err)
	}
}

// A queue record is what a worker forwards, signed, to the tenant's app.
// Someone who can write the store's files but has no key cannot queue an
// event: a framed record (what EncodeEntry writes, CRC and all) in place of
// an authenticated one, or an authenticated one whose body was changed,
// is not delivered and becomes a dead letter with the reason; an
// authenticated record copied under another id is damaged (moved aside).
func TestForgedQueueRecordsNotDelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	var ids []string
	for _, e := range []Entry{entry("a", "a1"), entry("a", "a2"), entry("a", "a3"), entry("a", "a4")} {
		id, _, err := db.Enqueue(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	db.Close()
	forged := entry("a", `{"webhook_type":"TRANSACTIONS","webhook_code":"TRANSACTIONS_REMOVED"}`)
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		// 1: replaced by a framed record with the forger's body.
		f := forged
		f.ID = ids[0]
		b, err := EncodeEntry(f)
		if err != nil {
			return err
		}
		if err := txn.Set([]byte("q/"+ids[0]), b); err != nil {
			return err
		}
		// 2: the body inside the authenticated envelope changed, the
		// frame's CRC computed again.
		v := rawGet(txn, []byte("q/"+ids[1]))
		kid := EntryKeyID(v)
		f.ID = ids[1]
		inner, err := EncodeEntry(f)
		if err != nil {
			return err
		}
		w := append(append(bytes.Clone(v[:2+len(kid)]), inner...), v[len(v)-macSize:]...)
		if err := txn.Set([]byte("q/"+ids[1]), w); err != nil {
			return err
		}
		// 3: a genuine record copied under another id.
		return txn.Set([]byte("q/"+ids[2]+"0"), rawGet(txn, []byte("q/"+ids[3])))
	})
	db = open(t, dir, keyring(t, k1))
	defer db.Close()
	var got []string
	for {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, e.ID+"="+string(e.Body))
		if err := db.Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{ids[2] + "=a3", ids[3] + "=a4"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want only the genuine records %q", got, want)
	}
	dl, err := db.DeadLetters(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 2 || dl[0].ID != ids[0] || dl[1].ID != ids[1] ||
		dl[0].LastError != UnauthenticatedReason || dl[1].LastError != UnauthenticatedReason {
		t.Fatalf("dead letters = %+v; want the two forged records with the reason", dl)
	}
	if err := db.view(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("qc/" + ids[2] + "0"))
		return err
	}); err != nil {
		t.Errorf("the record copied under another id is not in qc/: %v", err)
	}
}

// A damaged dead letter does not hide the others: it is listed as damaged,
// and a replay refuses it.
func TestDamagedDeadLetterListed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	var ids []string
	for _, body := range []string{"a1", "a2"} {
		if _, _, err := db.Enqueue(t.Context(), entry("a", body)); err != nil {
			t.Fatal(err)
		}
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if err := db.DeadLetter(e.ID, e.LeaseToken, "app down"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	db.Close()
	rawUpdate(t, dir, func(txn *badger.Txn) error {
		k := []byte("d/" + ids[0])
		v := bytes.Clone(rawGet(txn, k))
		v[len(v)-macSize-2] ^= 0x20
		return txn.Set(k, v)
	})
	db = open(t, dir, keyring(t, k1))
	defer db.Close()
	dl, err := db.DeadLetters(10)
	if err != nil || len(dl) != 2 || !strings.HasPrefix(dl[0].LastError, "damaged record") || dl[1].LastError != "app down" || !dl[1].Authenticated {
		t.Fatalf("DeadLetters = %+v, %v; want the damaged one listed as such, and the other", dl, err)
	}
	if err := db.Replay(ids[0], true); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Replay(damaged) = %v, want ErrCorrupt", err)
	}
}
