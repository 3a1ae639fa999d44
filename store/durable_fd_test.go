//go:build linux

package store

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// A sync round that cannot get a file descriptor (EMFILE under a flood of
// connections) has synced nothing and lost nothing: the writes waiting on
// it fail, but the next round, once descriptors are free again, succeeds.
// Only a failed fsync is sticky (TestGroupSyncFailureIsSticky). Before, an
// EMFILE while the round listed the data directory failed every later write
// until a restart. The child process runs out of descriptors for real.
func TestSyncRoundOutOfFDsIsNotSticky(t *testing.T) {
	dir := os.Getenv("SAFECLOSE_FD_CHILD")
	if dir == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSyncRoundOutOfFDsIsNotSticky$", "-test.v")
		cmd.Env = append(os.Environ(), "SAFECLOSE_FD_CHILD="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	set := func(k string) error {
		_, err := db.KVSet(ctx, "t", []byte(k), []byte("v"), 0, 0)
		return err
	}
	if err := set("before"); err != nil {
		t.Fatalf("write before: %v", err)
	}
	// A change in the directory makes the next round list it.
	if err := os.WriteFile(filepath.Join(dir, "nudge"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restore := exhaustFDs(t)
	err = set("starved")
	restore()
	if err == nil {
		t.Log("the round needed no new descriptor; nothing to check") // not expected: the directory changed
	} else {
		t.Logf("write while out of descriptors: %v", err)
	}
	for _, k := range []string{"after-1", "after-2"} {
		if err := set(k); err != nil {
			t.Fatalf("write %q once descriptors are free again: %v (a round that could not open a file must not fail every later write)", k, err)
		}
	}
	if err == nil {
		t.Fatal("the starved write succeeded: the test did not exercise the failure")
	}
}

// exhaustFDs fills every free descriptor number below a new soft
// RLIMIT_NOFILE, so the next open fails with EMFILE, and returns the undo.
func exhaustFDs(t *testing.T) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
		if len(held) > 64 { // holes filled: the last one is the highest
			break
		}
	}
	top := held[len(held)-1].Fd()
	lim := old
	lim.Cur = uint64(top) + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
		for _, f := range held {
			f.Close()
		}
	}
}
