package store

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// ErrUnavailable is an operation the storage refused for now: on Badger a
// write while the disk is (nearly) full (wrapped with the free space, or
// ENOSPC), on PostgreSQL a server that is unreachable, timing out,
// read-only or full (wrapped with its error). The store stays up and the
// operation succeeds again once the cause passes. The proxy answers 503
// store_unavailable, so Plaid retries webhooks. (Its text named only the
// disk, which misled an operator reading a PostgreSQL outage's logs.)
var ErrUnavailable = errors.New("store: storage unavailable")

// Why a reserve (RATIONALE.md "Why refuse writes before the disk is full"):
// Badger writes its write-ahead log, value log and new tables through mmap'd
// sparse files, so running out of space there is a SIGBUS in a Badger
// goroutine, which kills the process; no error is returned and nothing can
// recover it. So writes are refused while free space is below a reserve that
// covers what background work (flushing the memtables, an L0 compaction,
// the flush at Close) may still allocate for writes already accepted.

// spaceFresh is how long plenty of free space is taken as still there, and
// spaceHeadroom what "plenty" means beyond the reserve: 64 MiB cannot be
// written in 10 ms (6.4 GB/s), so a write never runs into the reserve unseen.
const (
	spaceFresh    = 10 * time.Millisecond
	spaceHeadroom = 64 << 20
)

// defaultReserve is the free space a store keeps for Badger's background work.
func defaultReserve(memTable int64) int64 {
	const memtables, l0Tables, slack = 3, 5, 2 // Badger's NumMemtables (ours), NumLevelZeroTables, a margin
	return (memtables + l0Tables + slack) * memTable
}

// checkSpace refuses a write when free space in the data directory is below
// the reserve. It logs each change between "enough" and "too little" once.
//
// A look at the file system (statfs, ~10 µs here, on every write and lease)
// that finds spaceHeadroom beyond the reserve free holds for spaceFresh
// (issue 12): using that up within spaceFresh takes writing gigabytes a
// second. Nearer the reserve (and on small disks) every call looks again.
func (db *DB) checkSpace() error {
	if db.reserve <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if now < db.spaceOK.Load() {
		return nil
	}
	free, err := freeBytes(db.dir)
	if err != nil {
		return nil // cannot tell: let Badger try; a plain ENOSPC error is still mapped
	}
	if free-db.reserve >= spaceHeadroom {
		db.spaceOK.Store(now + int64(spaceFresh))
	}
	if free < db.reserve {
		if !db.lowSpace.Swap(true) {
			db.log.Error("disk almost full: refusing writes until space is freed (webhooks answer 503 so Plaid retries)",
				"dir", db.dir, "free_bytes", free, "reserve_bytes", db.reserve)
		}
		return fmt.Errorf("%w: %d bytes free in %s, %d kept in reserve", ErrUnavailable, free, db.dir, db.reserve)
	}
	if db.lowSpace.Swap(false) {
		db.log.Info("disk space available again: accepting writes", "dir", db.dir, "free_bytes", free)
	}
	return nil
}

// noSpace marks an ENOSPC that Badger returned as an error as ErrUnavailable.
func noSpace(err error) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:gosec // block counts fit in int64
}
