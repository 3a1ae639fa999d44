package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// groupSync makes committed writes durable with as few fsyncs as possible
// (group fsync): a caller that committed waits for a round of fsyncs that
// began after its commit; every caller that committed while a round ran
// shares the next one. Badger itself, with SyncWrites, syncs its write-ahead
// log once per transaction, one after another in its single writer, so
// concurrent transactions (workers completing entries, the intake's batches,
// item updates) queued behind each other's fsync (issue 12). See RATIONALE.md
// "Why the store syncs in rounds".
//
// A failed round is sticky: after a failed fsync the kernel may have dropped
// the dirty pages and a later fsync can succeed without them, so every later
// write reports the failure until the process restarts. A round that
// stopped before an fsync could run (no descriptor to list the directory
// or open an older log: EMFILE) dropped nothing: it fails the writes that
// waited for it, and the next round tries again.
type groupSync struct {
	fn      func() error // one round: makes every committed write durable
	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // rounds begun
	done    uint64 // rounds finished
	running bool
	err     error  // sticky
	failed  uint64 // the last round that could not run (unsyncedError)
	failErr error  // its error
	rounds  uint64
	// begun is closed when a round begins (then replaced): lazy waiters
	// ride it. lazy counts them; lazyMax of them begin a round at once.
	begun chan struct{}
	lazy  int
}

// Lazy waits (outcomes of queue entries, which nobody waits for) hold back
// for lazyDelay or until lazyMax of them wait, so that they ride a round
// someone else needs anyway, or share one. A round costs ~250 µs of CPU
// here (msync of Badger's mapped write-ahead log, and the page faults that
// re-dirty its pages after it), so while a backlog drains with no intake
// to ride, fewer, larger rounds are cheaper: 32/5 ms → 64/10 ms took
// ~6% off the CPU per forwarded webhook (BenchmarkWebhookDrain, issue 12).
// A crash inside the delay re-forwards those entries (at least once).
const (
	lazyDelay = 10 * time.Millisecond
	lazyMax   = OutcomeBatch
)

// OutcomeBatch is how many outcome writes (Complete, Retry, DeadLetter)
// share a transaction at most (outcomes.go), and how many waiting for
// their sync round begin one at once; fewer wait up to 10 ms for company.
// A caller that bounds its outcomes in flight should allow more than this
// many.
const OutcomeBatch = 64

func newGroupSync(fn func() error) *groupSync {
	g := &groupSync{fn: fn, begun: make(chan struct{})}
	g.cond.L = &g.mu
	return g
}

// wait returns once a round that began after the call has finished.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waitFor(g.started + 1) // a running round may have begun before our commit
}

// waitLazy is wait for a write nobody is waiting on: it lets the round it
// needs begin up to lazyDelay later (or when lazyMax lazy waiters gather),
// so that it rides a round another writer begins meanwhile or shares one.
func (g *groupSync) waitLazy(n int) error {
	g.mu.Lock()
	want, begun := g.started+1, g.begun
	g.lazy += n
	if g.lazy >= lazyMax {
		g.lazy = 0
		g.mu.Unlock()
		return g.wait()
	}
	g.mu.Unlock()
	t := time.NewTimer(lazyDelay)
	select {
	case <-begun:
	case <-t.C:
	}
	t.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lazy = max(g.lazy-n, 0)
	return g.waitFor(want)
}

// waitFor returns once round want has finished, running it if nobody is;
// g.mu is held. A round that could not run (unsyncedError: no file
// descriptor for the directory or an older log) fails the writes that
// needed it, and only them: it synced nothing, so no page was dropped,
// and the next round tries again.
func (g *groupSync) waitFor(want uint64) error {
	for g.done < want && g.err == nil {
		if g.failed >= want {
			return g.failErr
		}
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		close(g.begun)
		g.begun = make(chan struct{})
		g.mu.Unlock()
		err := g.fn()
		g.mu.Lock()
		g.running = false
		g.rounds++
		var un *unsyncedError
		switch {
		case err == nil:
			g.done = n
		case errors.As(err, &un):
			g.failed, g.failErr = n, fmt.Errorf("store: sync: %w", err)
		default:
			g.done = n
			g.err = fmt.Errorf("store: sync: %w", err)
		}
		g.cond.Broadcast()
	}
	return g.err
}

// unsyncedError is a round that stopped before an fsync it needed could
// run (open or list failed, EMFILE above all): unlike a failed fsync it
// is not sticky.
type unsyncedError struct{ err error }

func (e *unsyncedError) Error() string { return e.err.Error() }
func (e *unsyncedError) Unwrap() error { return e.err }

// roundCount is the number of fsync rounds run so far.
func (g *groupSync) roundCount() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rounds
}

// syncFiles is one round: Badger's own Sync (the current memtable's
// write-ahead log and the current value log), then one fsync of each older
// write-ahead or value log file not synced since it became older. That
// covers a commit that landed in a memtable rotated out before the round
// began: Badger syncs only the current one and writes a rotated one to a
// table later. Only the newest file of each kind takes writes (Badger's
// single writer rotates before it writes), so an older one needs one fsync
// after it is seen older. A file that is gone was flushed to a synced table.
// Rounds run one at a time (groupSync), so old needs no lock.
//
// The directory is listed only when it may have changed since the last
// listing (dirWatch, inotify): unchanged, no file became older, and every
// older one was synced by an earlier round. Listing it every round cost
// ~30 µs of CPU a round (issue 12). The watch is read after Badger's Sync:
// a rotation before the round began created its new file before then.
func (db *DB) syncFiles() error {
	if err := db.bdb.Sync(); err != nil {
		return err
	}
	if db.listings > 0 && db.watch != nil && !db.watch.changed() {
		return nil
	}
	db.listings++
	es, err := os.ReadDir(db.dir)
	if err != nil {
		db.listings = 0 // the next round lists again
		return &unsyncedError{err}
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	for _, name := range olderLogs(names, db.oldSynced) {
		if err := fsyncFile(filepath.Join(db.dir, name)); err != nil {
			var un *unsyncedError
			if errors.As(err, &un) {
				db.listings = 0 // name is still unsynced: the next round lists again
			}
			return err
		}
		db.oldSynced[name] = true
	}
	return nil
}

// syncFilesChecked is syncFiles, then the test hook db.roundDone.
func (db *DB) syncFilesChecked() error {
	err := db.syncFiles()
	if err == nil && db.roundDone != nil {
		db.roundDone()
	}
	return err
}

// olderLogs returns the write-ahead (.mem) and value (.vlog) log files in
// names, but the newest of each kind, that are not in synced, and forgets
// from synced the files no longer there. Badger's zero-padded ids sort as
// numbers.
func olderLogs(names []string, synced map[string]bool) []string {
	names = slices.Clone(names)
	slices.Sort(names)
	var out []string
	present := map[string]bool{}
	for _, ext := range []string{".mem", ".vlog"} {
		var logs []string
		for _, n := range names {
			if strings.HasSuffix(n, ext) {
				logs = append(logs, n)
			}
		}
		for i, n := range logs {
			present[n] = true
			if i < len(logs)-1 && !synced[n] {
				out = append(out, n)
			}
		}
	}
	for n := range synced {
		if !present[n] {
			delete(synced, n)
		}
	}
	return out
}

func fsyncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &unsyncedError{err}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncMode says how a write waits for its sync round.
type syncMode int

const (
	syncNow   syncMode = iota // a round begun after the commit, at once
	syncLater                 // none: a later write's round covers it (Deferred)
)

// durable waits until every write committed before the call is on disk. An
// in-memory store has nothing to sync.
func (db *DB) durable() error { return db.durableMode(syncNow) }

func (db *DB) durableMode(m syncMode) error {
	if db.gs == nil || m == syncLater {
		return nil
	}
	return noSpace(db.gs.wait())
}

// durableLazy waits for the round of n writes committed together that
// nobody is waiting for (outcomes): the same round as durable, up to
// lazyDelay later (waitLazy); they count as n toward lazyMax.
func (db *DB) durableLazy(n int) error {
	if db.gs == nil {
		return nil
	}
	return noSpace(db.gs.waitLazy(n))
}

// Deferred is a view of the store for the effects of processing a queue
// entry (item state, orphans): its writes return once committed, without
// waiting for a sync round of their own. They become durable with the next
// round, at the latest the one that records the entry's outcome (Complete,
// Retry, DeadLetter), which is committed after them; until then a crash
// leaves the entry in the queue, and its effects are redone, which is why
// only idempotent effects may use it. A worker thus pays one shared round
// per entry, not one per write (issue 12). Reads see the writes at once.
type Deferred struct{ db *DB }

// Deferred returns the store's deferred-sync view.
func (db *DB) Deferred() *Deferred { return &Deferred{db} }

// UpdateItem is DB.UpdateItem without waiting for its sync round.
func (d *Deferred) UpdateItem(tenant, itemID string, fn func(*Item) error) (Item, error) {
	return d.db.updateItem(tenant, itemID, fn, syncLater)
}

// RecordOrphan is DB.RecordOrphan without waiting for its sync round.
func (d *Deferred) RecordOrphan(o Orphan) (bool, error) { return d.db.recordOrphan(o, syncLater) }

// SyncRounds is the number of fsync rounds run since Open (0 in memory):
// writes per round is how well concurrent writers share their fsyncs.
func (db *DB) SyncRounds() uint64 {
	if db.gs == nil {
		return 0
	}
	return db.gs.roundCount()
}
