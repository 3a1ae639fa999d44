package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
// write reports the failure until the process restarts.
type groupSync struct {
	fn      func() error // one round: makes every committed write durable
	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // rounds begun
	done    uint64 // rounds finished
	running bool
	err     error // sticky
	rounds  uint64
}

func newGroupSync(fn func() error) *groupSync {
	g := &groupSync{fn: fn}
	g.cond.L = &g.mu
	return g
}

// wait returns once a round that began after the call has finished.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	want := g.started + 1 // a running round may have begun before our commit
	for g.done < want && g.err == nil {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := g.fn()
		g.mu.Lock()
		g.running, g.done = false, n
		g.rounds++
		if err != nil {
			g.err = fmt.Errorf("store: sync: %w", err)
		}
		g.cond.Broadcast()
	}
	return g.err
}

// roundCount is the number of fsync rounds run so far.
func (g *groupSync) roundCount() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rounds
}

// syncFiles is one round: Badger's own Sync (the current memtable's
// write-ahead log and value log), then an fsync of every write-ahead log and
// value log file in the directory. The second step covers a commit that
// landed in a memtable that was rotated out before the round began: Badger
// syncs only the current one, and writes the rotated one to a table later. A
// file that is gone was flushed to a synced table first.
func (db *DB) syncFiles() error {
	if err := db.bdb.Sync(); err != nil {
		return err
	}
	es, err := os.ReadDir(db.dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		if err := fsyncFile(filepath.Join(db.dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func fsyncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// durable waits until every write committed before the call is on disk. An
// in-memory store has nothing to sync.
func (db *DB) durable() error {
	if db.gs == nil {
		return nil
	}
	return noSpace(db.gs.wait())
}
