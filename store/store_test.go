package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const (
	k1 = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	k2 = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	// k1 with different bytes: the "wrong key".
	k1bad = "k1:/wECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

func keyring(t testing.TB, spec string) *Keyring {
	t.Helper()
	kr, err := ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func open(t testing.TB, dir string, kr *Keyring) *DB {
	t.Helper()
	db, err := Open(Options{Dir: dir, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func item(tenant, user, id, inst string) Item {
	now := time.Now().UTC()
	return Item{Tenant: tenant, User: user, ItemID: id, InstitutionID: inst, State: StateOK, CreatedAt: now, UpdatedAt: now}
}

func TestPlaintextTokenNeverOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	const tok = "access-sandbox-SENTINEL-7d1e6c2a-4b0e-4a8e-9f3b-0123456789ab"
	for i := range 50 {
		if err := db.SaveItem(item("t", "u", "item"+string(rune('a'+i%26))+string(rune('a'+i/26)), "ins_1"), tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if bytes.Contains(b, []byte("SENTINEL")) {
			t.Errorf("plaintext token found in %s", p)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk: %v (%d files)", err, n)
	}
}

func TestItemsRestartAndIsolation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t1", "alice", "i1", "ins_1"), "access-1"); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveItem(item("t1", "alice", "i2", "ins_2"), "access-2"); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveItem(item("t1", "bob", "i1", "ins_1"), "access-x"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("same item_id for another owner: %v, want ErrDuplicate", err)
	}
	db.Close()
	db = open(t, dir, keyring(t, k1))
	defer db.Close()
	items, err := db.Items("t1", "alice")
	if err != nil || len(items) != 2 || items[0].ItemID != "i1" {
		t.Fatalf("Items after restart = %v, %v", items, err)
	}
	if tok, err := db.AccessToken("t1", "alice", "i2"); err != nil || tok != "access-2" {
		t.Errorf("AccessToken = %q, %v", tok, err)
	}
	for _, c := range []struct{ tenant, user, id string }{{"t1", "bob", "i1"}, {"t2", "alice", "i1"}} {
		if _, err := db.AccessToken(c.tenant, c.user, c.id); !errors.Is(err, ErrNotFound) {
			t.Errorf("AccessToken(%v) = %v, want ErrNotFound", c, err)
		}
	}
	if items, _ := db.Items("t1", "bob"); len(items) != 0 {
		t.Errorf("bob sees %v", items)
	}
	if _, err := db.Item("t2", "i1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Item(other tenant) = %v", err)
	}
	it, err := db.UpdateItem("t1", "i1", func(it *Item) error { it.State = StateLoginRequired; it.User = "mallory"; return nil })
	if err != nil || it.State != StateLoginRequired || it.User != "alice" {
		t.Errorf("UpdateItem = %+v, %v", it, err)
	}
}

func TestNoKeyAndKeyMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	if err := db.SaveItem(item("t", "u", "i", ""), "access-1"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("SaveItem without key = %v, want ErrNoKey", err)
	}
	if items, _ := db.Items("t", "u"); len(items) != 0 {
		t.Fatalf("saved without key")
	}
	db.Close()

	db = open(t, dir, keyring(t, k1))
	if err := db.SaveItem(item("t", "u", "i", ""), "access-1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Same key id, different bytes: detected at open.
	db = open(t, dir, keyring(t, k1bad))
	if err := db.KeyStatus(); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("KeyStatus(wrong key) = %v", err)
	}
	if err := db.SaveItem(item("t", "u", "j", ""), "access-2"); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("SaveItem(wrong key) = %v", err)
	}
	db.Close()
	// A keyring without the key that sealed the data.
	db = open(t, dir, keyring(t, k2))
	if err := db.KeyStatus(); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("KeyStatus(missing key) = %v", err)
	}
	db.Close()
}

func TestRotateKeepsEveryItemReadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	for _, id := range []string{"a", "b", "c"} {
		if err := db.SaveItem(item("t", "u", id, ""), "access-"+id); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db = open(t, dir, keyring(t, k2+","+k1)) // k2 primary, k1 for opening
	if n, err := db.Rotate(); err != nil || n != 3 {
		t.Fatalf("Rotate = %d, %v; want 3", n, err)
	}
	db.Close()
	db = open(t, dir, keyring(t, k2)) // k1 retired
	defer db.Close()
	if err := db.KeyStatus(); err != nil {
		t.Fatalf("KeyStatus after retiring k1 = %v", err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if tok, err := db.AccessToken("t", "u", id); err != nil || tok != "access-"+id {
			t.Errorf("AccessToken(%s) = %q, %v", id, tok, err)
		}
	}
}

func TestParseKeyringErrorsHideKeys(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"", "nokey", "k:!!notbase64!!", "k:AAAA", "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="} {
		_, err := ParseKeyring(spec)
		if err == nil {
			t.Errorf("ParseKeyring(%q) accepted", spec)
			continue
		}
		if len(spec) > 8 && bytes.Contains([]byte(err.Error()), []byte(spec[2:10])) {
			t.Errorf("error leaks key material: %v", err)
		}
	}
}

// A keyring written the wrong way round ("base64:id", or a key where the id
// belongs) puts the key where the errors used to quote the id.
func TestParseKeyringErrorsHideMisplacedKeys(t *testing.T) {
	t.Parallel()
	const key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
	const slashKey = "q83v/jRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
	tests := []struct{ name, spec string }{
		{"swapped", key + ":k1a2b3c4d"},
		{"swapped short id", key + ":k1"},
		{"swapped second entry", "k1:" + key + "," + key + ":k0"},
		{"key as id of a key", slashKey + ":" + key},
		{"key without a slash as id of a key", key + ":" + slashKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseKeyring(tt.spec)
			if err == nil {
				t.Fatalf("ParseKeyring(%q) accepted", tt.spec)
			}
			for _, k := range []string{key, slashKey} {
				if bytes.Contains([]byte(err.Error()), []byte(k[:12])) {
					t.Errorf("ParseKeyring(%q) = %v, which quotes key material", tt.spec, err)
				}
			}
		})
	}
}

func entry(tenant, body string) Entry {
	return Entry{Tenant: tenant, Body: []byte(body), BodySHA256: sha256.Sum256([]byte(body)), ReceivedAt: time.Now()}
}

// Issue 10.5: the TTL runs on synctest's clock, not a 1.1 s sleep.
func TestEnqueueDedupeWithTTL(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		db, err := Open(Options{InMemory: true, DedupeTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := t.Context()
		id, dup, err := db.Enqueue(ctx, entry("t", "body-1"))
		if err != nil || dup || id == "" {
			t.Fatalf("Enqueue = %q %v %v", id, dup, err)
		}
		if _, dup, _ := db.Enqueue(ctx, entry("t", "body-1")); !dup {
			t.Errorf("same body not detected as duplicate")
		}
		if _, dup, _ := db.Enqueue(ctx, entry("t2", "body-1")); dup {
			t.Errorf("dedupe crossed tenants")
		}
		time.Sleep(999 * time.Millisecond) // Badger TTLs have second granularity
		if _, dup, _ := db.Enqueue(ctx, entry("t", "body-1")); !dup {
			t.Errorf("dedupe marker expired before its TTL")
		}
		time.Sleep(1100 * time.Millisecond)
		if _, dup, _ := db.Enqueue(ctx, entry("t", "body-1")); dup {
			t.Errorf("dedupe marker outlived its TTL")
		}
		if n, _ := db.QueueLen(); n != 3 {
			t.Errorf("QueueLen = %d, want 3", n)
		}
	})
}

func TestLeaseRetryDeadLetterReplay(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	db, err := Open(Options{InMemory: true, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, _, err := db.Enqueue(t.Context(), entry("t", "x"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := db.Lease("w1", time.Minute, 10)
	if err != nil || len(es) != 1 || es[0].ID != id || string(es[0].Body) != "x" {
		t.Fatalf("Lease = %v, %v", es, err)
	}
	if again, _ := db.Lease("w2", time.Minute, 10); len(again) != 0 {
		t.Fatalf("leased entry visible to another worker")
	}
	advance(2 * time.Minute) // w1 died: the lease expires
	es2, _ := db.Lease("w2", time.Minute, 10)
	if len(es2) != 1 {
		t.Fatalf("expired lease not visible again")
	}
	if err := db.Complete(id, es[0].LeaseToken); !errors.Is(err, ErrStaleLease) {
		t.Errorf("Complete with stale lease = %v", err)
	}
	if err := db.Retry(id, es2[0].LeaseToken, clock().Add(time.Hour), "boom"); err != nil {
		t.Fatal(err)
	}
	if es, _ := db.Lease("w2", time.Minute, 10); len(es) != 0 {
		t.Errorf("entry due before its backoff")
	}
	advance(2 * time.Hour)
	es3, _ := db.Lease("w2", time.Minute, 10)
	if len(es3) != 1 || es3[0].Attempts != 1 || es3[0].LastError != "boom" {
		t.Fatalf("after backoff = %+v", es3)
	}
	if err := db.DeadLetter(id, es3[0].LeaseToken, "gave up"); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.QueueLen(); n != 0 {
		t.Errorf("dead letter still queued")
	}
	dl, _ := db.DeadLetters(10)
	if len(dl) != 1 || dl[0].ID != id || dl[0].Attempts != 2 {
		t.Fatalf("DeadLetters = %+v", dl)
	}
	if err := db.Replay(id, false); err != nil {
		t.Fatal(err)
	}
	es4, _ := db.Lease("w3", time.Minute, 10)
	if len(es4) != 1 || es4[0].Attempts != 0 {
		t.Fatalf("replayed = %+v", es4)
	}
	if err := db.Complete(id, es4[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.QueueLen(); n != 0 {
		t.Errorf("QueueLen after Complete = %d", n)
	}
}

// Hammer: P producers × N webhooks with concurrent workers; every entry is
// completed exactly once.
func TestQueueHammer(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	const P, N = 8, 40
	var wg sync.WaitGroup
	for p := range P {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range N {
				if _, dup, err := db.Enqueue(t.Context(), entry("t", string(rune('A'+p))+"-"+string(rune(i+'0')))); err != nil || dup {
					t.Errorf("Enqueue: %v dup=%v", err, dup)
				}
			}
		}()
	}
	var mu sync.Mutex
	done := map[string]int{}
	stopW := make(chan struct{})
	var ww sync.WaitGroup
	for w := range 4 {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for {
				es, err := db.Lease("w"+string(rune('0'+w)), time.Minute, 4)
				if err != nil {
					t.Errorf("Lease: %v", err)
					return
				}
				for _, e := range es {
					if err := db.Complete(e.ID, e.LeaseToken); err != nil {
						t.Errorf("Complete: %v", err)
					}
					mu.Lock()
					done[e.ID]++
					mu.Unlock()
				}
				if len(es) == 0 {
					select {
					case <-stopW:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 400; i++ {
		if n, _ := db.QueueLen(); n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopW)
	ww.Wait()
	if len(done) != P*N {
		t.Errorf("completed %d distinct entries, want %d", len(done), P*N)
	}
	for id, n := range done {
		if n != 1 {
			t.Errorf("entry %s completed %d times", id, n)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	b, _ := EncodeEntry(Entry{ID: "1", Tenant: "t", Body: []byte("{}")})
	f.Add(b)
	f.Add([]byte(`{"id":"x","tenant":"t","body":"!!"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		b2, err := EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := DecodeEntry(b2)
		if err != nil || e2.ID != e.ID || !bytes.Equal(e2.Body, e.Body) {
			t.Fatalf("round trip changed the entry: %v", err)
		}
	})
}
