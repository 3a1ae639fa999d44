package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// runOutcomes writes batch as the outcome writer does and returns each
// outcome's answer.
func runOutcomes(db *DB, batch []*outcomeReq) []error {
	all := append([]*outcomeReq(nil), batch...)
	for len(batch) > 0 {
		batch = db.writeOutcomes(batch)
	}
	errs := make([]error, len(all))
	for i, r := range all {
		errs[i] = <-r.done
	}
	return errs
}

func setter(key string, value []byte, err error) *outcomeReq {
	return &outcomeReq{done: make(chan error, 1), fn: func(txn *badger.Txn) error {
		if e := txn.Set([]byte(key), value); e != nil {
			return e
		}
		return err
	}}
}

func read(t *testing.T, db *DB, key string) ([]byte, bool) {
	t.Helper()
	var v []byte
	err := db.view(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// Issue 12: outcomes share a transaction, and one that fails costs only
// itself: it is answered its error and none of its writes land, while the
// outcomes before and after it in the batch are written and answered nil.
func TestOutcomeFailureCostsOnlyItself(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	boom := errors.New("boom")
	errs := runOutcomes(db, []*outcomeReq{
		setter("x/1", []byte("one"), nil),
		setter("x/2", []byte("two"), boom),
		setter("x/3", []byte("three"), nil),
		setter("x/4", []byte("four"), boom),
	})
	for i, want := range []error{nil, boom, nil, boom} {
		if !errors.Is(errs[i], want) {
			t.Errorf("outcome %d answered %v, want %v", i+1, errs[i], want)
		}
	}
	for key, want := range map[string]bool{"x/1": true, "x/2": false, "x/3": true, "x/4": false} {
		if _, ok := read(t, db, key); ok != want {
			t.Errorf("%s written = %v, want %v", key, ok, want)
		}
	}
}

// Issue 12: outcomes that together exceed one Badger transaction go on in
// the next: every one is written and answered nil. Each writes twice, as
// DeadLetter does (delete from the queue, then the dead letter): the one
// that does not fit must not leave its first write in the transaction that
// is committed without it (a dead letter deleted from the queue and never
// written), which its second run would find here.
func TestOutcomesSplitWhenTooBigForOneTransaction(t *testing.T) {
	t.Parallel()
	// A 1 MiB memtable bounds a transaction at ~150 KiB (15%); values
	// under its 100 KiB value threshold count whole.
	db, err := Open(Options{Dir: t.TempDir(), MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var batch []*outcomeReq
	for i := range 8 {
		mark, big := []byte(fmt.Sprint("mark/", i)), bytes.Repeat([]byte{byte('a' + i)}, 60<<10)
		batch = append(batch, &outcomeReq{done: make(chan error, 1), fn: func(txn *badger.Txn) error {
			if _, err := txn.Get(mark); err == nil {
				return fmt.Errorf("outcome %d: its first write was committed without its second", i)
			}
			if err := txn.Set(mark, []byte("1")); err != nil {
				return err
			}
			return txn.Set([]byte(fmt.Sprint("big/", i)), big)
		}})
	}
	for i, err := range runOutcomes(db, batch) {
		if err != nil {
			t.Errorf("outcome %d = %v, want nil", i, err)
		}
	}
	for i := range 8 {
		if v, ok := read(t, db, fmt.Sprint("big/", i)); !ok || len(v) != 60<<10 || v[0] != byte('a'+i) {
			t.Errorf("big/%d: written %v, %d bytes", i, ok, len(v))
		}
	}
}

// Issue 12: outcomes recorded concurrently (workers write them in the
// background) are each written once, answered, and durable: the entries
// are gone after a reopen. Close with outcomes still arriving neither
// hangs nor loses an answer: each is nil or ErrClosed.
func TestConcurrentOutcomesAndClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	const n = 300
	for i := range n {
		if _, _, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: fmt.Appendf(nil, `{"n":%d}`, i), BodySHA256: [32]byte{byte(i), byte(i >> 8)}, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := db.Lease("w", time.Minute, n)
	if err != nil || len(es) != n {
		t.Fatalf("Lease = %d, %v", len(es), err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, e := range es[:200] {
		wg.Go(func() {
			if i%3 == 0 {
				errs[i] = db.Retry(e.ID, e.LeaseToken, time.Now().Add(time.Hour), "later")
			} else {
				errs[i] = db.Complete(e.ID, e.LeaseToken)
			}
		})
	}
	wg.Wait()
	for i, err := range errs[:200] {
		if err != nil {
			t.Fatalf("outcome %d = %v", i, err)
		}
	}
	for i, e := range es[200:] { // racing Close
		wg.Go(func() { errs[200+i] = db.Complete(e.ID, e.LeaseToken) })
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	completed := 0
	for i, err := range errs[200:] {
		switch {
		case err == nil:
			completed++
		case !errors.Is(err, ErrClosed):
			t.Errorf("outcome %d racing Close = %v, want nil or ErrClosed", 200+i, err)
		}
	}
	db = open(t, dir, nil)
	defer db.Close()
	retried := (200 + 2) / 3
	if got, err := db.QueueLen(); err != nil || got != retried+(n-200-completed) {
		t.Errorf("QueueLen after reopen = %d, %v; want %d retried + %d not completed", got, err, retried, n-200-completed)
	}
}

// Issue 12: outcomes that wait at once share one transaction. While the
// writer is inside one outcome, five Completes queue; they are then
// written together: two transactions for six outcomes.
func TestWaitingOutcomesShareATransaction(t *testing.T) {
	t.Parallel()
	db := open(t, t.TempDir(), nil)
	defer db.Close()
	for i := range 5 {
		if _, _, err := db.Enqueue(context.Background(), Entry{Tenant: "t", Body: fmt.Appendf(nil, `{"n":%d}`, i), BodySHA256: [32]byte{byte(i)}, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := db.Lease("w", time.Minute, 5)
	if err != nil || len(es) != 5 {
		t.Fatalf("Lease = %d, %v", len(es), err)
	}
	t0 := db.outcomeTxns.Load()
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.outcome(func(*badger.Txn) error { close(entered); <-release; return nil })
	}()
	<-entered
	var wg sync.WaitGroup
	errs := make([]error, len(es))
	for i, e := range es {
		wg.Go(func() { errs[i] = db.Complete(e.ID, e.LeaseToken) })
	}
	for i := 0; len(db.outReqs) < len(es); i++ { // bounded: 1000 × 5 ms
		if i == 1000 {
			t.Fatalf("%d of %d Completes queued for the writer", len(db.outReqs), len(es))
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("Complete %d = %v", i, err)
		}
	}
	if n := db.outcomeTxns.Load() - t0; n != 2 {
		t.Errorf("six outcomes took %d transactions, want 2 (the five that waited together in one)", n)
	}
	if n, err := db.QueueLen(); err != nil || n != 0 {
		t.Errorf("QueueLen = %d, %v; want 0", n, err)
	}
}
