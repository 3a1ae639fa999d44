package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// smallDisk mounts an 8 MiB tmpfs and returns its path; it is unmounted in
// Cleanup (after the store using it is closed, since Cleanup runs LIFO).
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the full-disk test needs root to mount a tmpfs, and CI=true")
		}
		t.Skip("the full-disk test needs root to mount a small tmpfs (mount -t tmpfs -o size=8m)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file of n bytes on the small disk, taking space from Badger.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 9.12: a full disk killed the process (SIGBUS in Badger's mmap'd
// write-ahead log). Writes must fail with ErrUnavailable, the process stays
// up, reads keep working, and writes succeed again once space returns.
func TestDiskFullRefusesWritesAndRecovers(t *testing.T) {
	mnt := smallDisk(t)
	dir := filepath.Join(mnt, "data")
	db, err := Open(Options{Dir: dir, MemTableSize: 256 << 10}) // reserve: 10 × 256 KiB
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	fill(t, filepath.Join(mnt, "filler"), 3<<20)
	body := make([]byte, 4000)
	accepted, i := 0, 0
	// Write until refused. Badger's background work (a flush that deletes
	// a write-ahead log, a compaction) may then free some space, and the
	// store rightly accepts writes again (a clean-clone CI run once saw
	// Ping answer ok just after a refusal): so write until a refusal
	// holds for Ping and Lease too. Bounded: 4000 bodies, 16 MB, are more
	// than the 8 MiB disk holds, and at most 50 rounds.
	for round := 0; ; round++ {
		refused := false
		for ; i < 4000; i++ {
			copy(body, fmt.Sprintf("%08d", i))
			_, _, err := db.Enqueue(context.Background(), entry("t", string(body)))
			if errors.Is(err, ErrUnavailable) {
				refused = true
				break
			}
			if err != nil {
				t.Fatalf("Enqueue %d = %v; want nil or ErrUnavailable", i, err)
			}
			accepted++
		}
		if !refused || accepted == 0 {
			t.Fatalf("accepted %d webhooks, refused=%v; want some accepted, then ErrUnavailable", accepted, refused)
		}
		pingErr := db.Ping()
		_, leaseErr := db.Lease("w", 0, 1)
		if errors.Is(pingErr, ErrUnavailable) && errors.Is(leaseErr, ErrUnavailable) {
			break
		}
		for _, err := range []error{pingErr, leaseErr} {
			if err != nil && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Ping or Lease (a write) on a full disk = %v; want ErrUnavailable", err)
			}
		}
		if round == 50 {
			t.Fatalf("Ping = %v, Lease = %v after 50 refusals; want ErrUnavailable while the disk stays full", pingErr, leaseErr)
		}
	}
	if n, err := db.QueueLen(); err != nil || n != accepted {
		t.Errorf("QueueLen on a full disk = %d, %v; want %d, nil", n, err, accepted)
	}
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Enqueue(context.Background(), entry("t", "after space returned")); err != nil {
		t.Errorf("Enqueue after space returned = %v", err)
	}
	if err := db.Ping(); err != nil {
		t.Errorf("Ping after space returned = %v", err)
	}
}
