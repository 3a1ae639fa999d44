package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/safeclose/safeclose/store"
)

// The operator's side of authenticated queue records: an entry queued
// without the keys is not delivered by a proxy that has them; `webhooks
// list` shows it with the reason, as not authenticated; `webhooks replay`
// leaves it out (-all) or refuses it (by id) unless -vouch, which
// authenticates it, so it is delivered. Without the keys the replay says
// it cannot authenticate.
func TestWebhooksReplayAuthenticatesADeadLetter(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	kr, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"it-1"}`)
	db, err := store.Open(store.Options{Dir: data, MinFreeBytes: -1}) // no keys
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body), ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	body2 := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"it-2"}`)
	id2, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: "t1", Body: body2, BodySHA256: sha256.Sum256(body2), ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1}) // as serve with its keys
	if err != nil {
		t.Fatal(err)
	}
	if e, ok, err := db.LeaseNext("w", time.Minute, "", nil); err != nil || ok {
		t.Fatalf("LeaseNext with the keys = %+v, %v, %v; want nothing delivered", e, ok, err)
	}
	db.Close()

	cfg := offlineConfig(t, dir, "data_dir: "+data+"\nkeys: env:SAFECLOSE_REPLAY_KEYS\n")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"webhooks", "list", "-config", cfg}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("webhooks list = %q; want two dead letters", out.String())
	}
	for i, want := range []string{id, id2} {
		var listed struct {
			ID            string `json:"id"`
			LastError     string `json:"last_error"`
			Authenticated *bool  `json:"authenticated"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &listed); err != nil {
			t.Fatalf("webhooks list: %v: %s", err, lines[i])
		}
		if listed.ID != want || listed.LastError != store.UnauthenticatedReason || listed.Authenticated == nil || *listed.Authenticated {
			t.Fatalf("webhooks list line %d = %s; want %s with the reason", i, lines[i], want)
		}
	}
	for _, args := range [][]string{{}, {"-all", id}} {
		err := run(context.Background(), append([]string{"webhooks", "replay", "-config", cfg}, args...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "-all") {
			t.Errorf("webhooks replay %q = %v; want a usage error naming -all", args, err)
		}
	}

	// Without the keys: replayed, with a note that it is not authenticated.
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"webhooks", "replay", "-config", cfg, id}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "not authenticated") {
		t.Errorf("replay without keys: stderr %q, want the note", errb.String())
	}
	db, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.LeaseNext("w", time.Minute, "", nil); err != nil || ok {
		t.Fatalf("LeaseNext after a replay without keys = %v, %v; want a dead letter again", ok, err)
	}
	if dl, err := db.DeadLetters(10); err != nil || len(dl) != 2 {
		t.Fatalf("DeadLetters = %d, %v; want both", len(dl), err)
	}
	db.Close()

	// With the keys, not vouched for: left out by -all, refused by id.
	t.Setenv("SAFECLOSE_REPLAY_KEYS", keys)
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"webhooks", "replay", "-config", cfg, "-all"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "0 dead letter(s) replayed") || !strings.Contains(errb.String(), "2 dead letter(s) not authenticated") {
		t.Errorf("replay -all, not vouched: stdout %q stderr %q; want both left out", out.String(), errb.String())
	}
	err = run(context.Background(), []string{"webhooks", "replay", "-config", cfg, id}, &out, &errb)
	if !errors.Is(err, store.ErrUnauthenticated) || !strings.Contains(err.Error(), "-vouch") {
		t.Errorf("replay ID, not vouched = %v; want refused, naming -vouch", err)
	}

	// Vouched for: every dead letter at once, delivered.
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"webhooks", "replay", "-config", cfg, "-vouch", "-all"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if !strings.Contains(out.String(), "replayed "+id) || !strings.Contains(out.String(), "replayed "+id2) ||
		!strings.Contains(errb.String(), "2 dead letter(s) replayed") || strings.Contains(errb.String(), "not authenticated") {
		t.Errorf("replay -vouch -all: stdout %q stderr %q", out.String(), errb.String())
	}
	db, err = store.Open(store.Options{Dir: data, Keyring: kr, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, want := range []string{string(body), string(body2)} {
		e, ok, err := db.LeaseNext("w", time.Minute, "", nil)
		if err != nil || !ok || string(e.Body) != want {
			t.Fatalf("LeaseNext after a replay with the keys = %+v, %v, %v; want %s", e, ok, err, want)
		}
		if err := db.Complete(e.ID, e.LeaseToken); err != nil {
			t.Fatal(err)
		}
	}
}

// `webhooks replay -all` leaves a damaged dead letter out, saying so,
// instead of failing on it (or calling it unauthenticated).
func TestWebhooksReplayAllLeavesDamagedOut(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	db, err := store.Open(store.Options{Dir: data, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range []string{"first", "second"} {
		body := []byte(b)
		if _, _, err := db.Enqueue(t.Context(), store.Entry{Tenant: "t1", Body: body, BodySHA256: sha256.Sum256(body)}); err != nil {
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
	bdb, err := badger.Open(badger.DefaultOptions(data).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(txn *badger.Txn) error {
		k := []byte("d/" + ids[0])
		it, err := txn.Get(k)
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)-2] ^= 0x20 // inside the framed JSON: its CRC fails
		return txn.Set(k, v)
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	cfg := offlineConfig(t, dir, "data_dir: "+data+"\n")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"webhooks", "replay", "-config", cfg, "-all"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if !strings.Contains(out.String(), "replayed "+ids[1]) || strings.Contains(out.String(), ids[0]) ||
		!strings.Contains(errb.String(), "1 damaged dead letter(s) left out") {
		t.Errorf("replay -all: stdout %q stderr %q; want the second replayed and the damaged one left out", out.String(), errb.String())
	}
}
