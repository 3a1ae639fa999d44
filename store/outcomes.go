package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Outcomes of queue entries (Complete, Retry, DeadLetter, with an orphan)
// are written in shared transactions: the outcome writer takes every
// outcome waiting, up to OutcomeBatch, and writes them in one Badger
// transaction. One transaction an outcome made a draining worker's commits
// outnumber the intake's batches eight to one, and every Badger
// transaction, the intake's included, waits until the commits before it
// are applied (issue 12). PostgreSQL's outcomes share transactions the
// same way (store/pg writes.go).
//
// Each outcome's writes are a function run in the shared transaction. One
// that fails is answered its error and the transaction is begun again
// without it, so a failure costs only its own outcome; one that would make
// the transaction too big goes on in the next. The functions are run again
// after a conflict, so they must not keep state between runs but what
// they set from the transaction they are given.
type outcomeReq struct {
	fn   func(*badger.Txn) error
	done chan error
}

// outcome writes fn's writes in the next shared transaction and returns
// once they are durable (lazily: waitLazy).
func (db *DB) outcome(fn func(*badger.Txn) error) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writable(); err != nil {
		return err
	}
	r := &outcomeReq{fn: fn, done: make(chan error, 1)}
	db.outReqs <- r // the writer runs until Close, which waits for this call
	return <-r.done
}

// outcomeWriter is the goroutine that writes outcomes until Close.
func (db *DB) outcomeWriter() {
	defer close(db.outDone)
	for {
		var batch []*outcomeReq
		select {
		case <-db.stop:
			return // Close holds closeMu: no outcome is waiting
		case r := <-db.outReqs:
			batch = append(make([]*outcomeReq, 0, OutcomeBatch), r)
		}
	fill:
		for len(batch) < OutcomeBatch {
			select {
			case r := <-db.outReqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		for len(batch) > 0 {
			batch = db.writeOutcomes(batch)
		}
	}
}

// writeOutcomes writes a prefix of batch, at least its first outcome, in
// one transaction, answers the outcomes it is done with, and returns the
// rest.
func (db *DB) writeOutcomes(batch []*outcomeReq) (rest []*outcomeReq) {
	n := len(batch) // the prefix this transaction takes
	for attempt := 0; ; {
		txn := db.bdb.NewTransaction(true)
		var failed error
		tooBig := false
		for i, r := range batch[:n] {
			if err := r.fn(txn); err != nil {
				txn.Discard()
				// One that does not fit is not written in part: the
				// transaction is begun again with the ones before it.
				tooBig = errors.Is(err, badger.ErrTxnTooBig) && i > 0
				if !tooBig {
					failed = err
				}
				n = i
				break
			}
		}
		switch {
		case tooBig:
			continue
		case failed != nil: // answer it; the others are written without it
			batch[n].done <- noSpace(failed)
			return append(batch[:n:n], batch[n+1:]...)
		}
		err := txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			if attempt++; attempt <= 10 {
				continue
			}
			err = fmt.Errorf("store: too many conflicts")
		}
		done := batch[:n:n]
		if err != nil {
			for _, r := range done {
				r.done <- noSpace(err)
			}
			return batch[n:]
		}
		db.outcomeTxns.Add(1)
		// Nobody waits for an outcome (workers record them in the
		// background), so they ride or share a round (waitLazy), counted
		// as many as they are; the writer goes on meanwhile.
		go func() {
			err := db.durableLazy(len(done))
			for _, r := range done {
				r.done <- err
			}
		}()
		return batch[n:]
	}
}
