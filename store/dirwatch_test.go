package store

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// dirWatch reports entries created, renamed and deleted in its directory,
// once each, and nothing else.
func TestDirWatch(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux's; elsewhere every round lists the directory")
	}
	dir := t.TempDir()
	w := newDirWatch(dir)
	if w == nil {
		t.Fatal("newDirWatch = nil on Linux")
	}
	defer w.close()
	if w.changed() {
		t.Error("changed() on an untouched directory = true")
	}
	p := filepath.Join(dir, "00001.mem")
	steps := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(p, []byte("x"), 0o600) }},
		{"rename", func() error { return os.Rename(p, p+".2") }},
		{"delete", func() error { return os.Remove(p + ".2") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		if !w.changed() {
			t.Errorf("changed() after %s = false", s.name)
		}
		if w.changed() {
			t.Errorf("changed() twice after one %s = true", s.name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "00002.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00002.mem"), []byte("more"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.changed()
	if err := os.WriteFile(filepath.Join(dir, "00002.mem"), []byte("writes to an existing file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w.changed() {
		t.Error("changed() after writing to an existing file = true; only entries matter")
	}
}

// Issue 12: syncFiles lists the data directory only when it changed, yet
// every write-ahead log rotated out while holding acknowledged writes is
// still fsynced: a .mem file seen older than the newest at the end of one
// round has been fsynced by the end of the next (commits that landed in it
// before it became older are answered only after that next round).
func TestRotatedLogsSyncedWithoutListingEveryRound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var older []string // .mem files older than the newest at the last round's end
	var problems []string
	checked := 0
	db.roundDone = func() { // rounds run one at a time
		es, err := os.ReadDir(dir)
		if err != nil {
			problems = append(problems, err.Error())
			return
		}
		var mems []string
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ".mem") {
				mems = append(mems, e.Name())
			}
		}
		slices.Sort(mems)
		for _, m := range older {
			if slices.Contains(mems, m) {
				checked++
				if !db.oldSynced[m] {
					problems = append(problems, m+" was older than "+mems[len(mems)-1]+" a round ago and is still not fsynced")
				}
			}
		}
		older = nil
		if len(mems) > 1 {
			older = mems[:len(mems)-1]
		}
	}
	r0, l0 := db.gs.roundCount(), db.listings
	body := make([]byte, 1024)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				e := Entry{Tenant: "t", Body: body, BodySHA256: sha256.Sum256(fmt.Appendf(nil, "%d-%d", g, i))}
				if _, _, err := db.Enqueue(t.Context(), e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every answer came after its round: the rounds are over, and what the
	// hook saw is visible here.
	for _, p := range problems {
		t.Error(p)
	}
	if checked == 0 {
		t.Error("no round saw a rotated write-ahead log; the test needs rotations")
	}
	rounds, listings := db.gs.roundCount()-r0, db.listings-l0
	if runtime.GOOS == "linux" && listings >= rounds {
		t.Errorf("%d rounds listed the directory %d times; want fewer listings than rounds", rounds, listings)
	}
	t.Logf("%d rounds, %d listings, %d rotated-log checks", rounds, listings, checked)
}

// A round's look at the watch allocates nothing (it ran on every fsync
// round and allocated its 4 KiB read buffer each time).
func TestDirWatchChangedAllocs(t *testing.T) {
	w := newDirWatch(t.TempDir())
	if w == nil {
		t.Skip("no inotify here")
	}
	defer w.close()
	w.changed()
	if n := testing.AllocsPerRun(100, func() { w.changed() }); n != 0 {
		t.Errorf("changed allocates %v times a call, want 0", n)
	}
}
