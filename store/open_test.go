package store

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// filledDir makes a closed store with n items, flushed to table files.
func filledDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	db := open(t, dir, keyring(t, k1))
	for i := range n {
		if err := db.SaveItem(item("t", "u", "item"+string(rune('a'+i%26))+string(rune('a'+i/26%26)), "ins_1"), "access-x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(ssts) == 0 {
		t.Fatal("no table file after Close")
	}
	return dir
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// Issue 9.10: with the MANIFEST deleted or truncated, Badger started empty and
// deleted the old tables, logging nothing.
func TestOpenRefusesDataWithoutValidManifest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(t *testing.T, manifest string)
	}{
		{"deleted", func(t *testing.T, m string) {
			if err := os.Remove(m); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty", func(t *testing.T, m string) {
			if err := os.Truncate(m, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, m string) {
			fi, err := os.Stat(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(m, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filledDir(t, 30)
			tt.break_(t, filepath.Join(dir, "MANIFEST"))
			before := listDir(t, dir)
			db, err := Open(Options{Dir: dir, Keyring: keyring(t, k1)})
			if err == nil {
				items, _ := db.Items("t", "u")
				db.Close()
				t.Fatalf("Open with a %s MANIFEST succeeded (%d items visible), want a refusal", tt.name, len(items))
			}
			if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "MANIFEST") || !strings.Contains(msg, "backup") {
				t.Errorf("Open error = %q; want it to name the directory, the MANIFEST and the way out (restore from backup)", msg)
			}
			if after := listDir(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("refused Open changed the directory: %v → %v", before, after)
			}
		})
	}
}

// Issue 9.10: a fresh directory and a directory with only our marker behave.
func TestOpenMarkerMeansData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := open(t, dir, nil)
	db.Close()
	if _, err := os.Stat(filepath.Join(dir, markerName)); err != nil {
		t.Fatalf("no marker after first open: %v", err)
	}
	db = open(t, dir, nil) // a clean reopen is fine
	db.Close()
	// Everything but our marker gone: that is not a fresh directory.
	for _, name := range listDir(t, dir) {
		if name != markerName {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if db, err := Open(Options{Dir: dir}); err == nil {
		db.Close()
		t.Fatal("Open of a directory that had data but lost everything succeeded")
	}
}

// Issue 9.12: a truncated table file panicked.
func TestOpenTruncatedTableIsAnError(t *testing.T) {
	t.Parallel()
	dir := filledDir(t, 30)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	fi, err := os.Stat(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(ssts[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	db, err := Open(Options{Dir: dir, Keyring: keyring(t, k1)})
	if err == nil {
		db.Close()
		t.Fatal("Open with a truncated table succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, filepath.Base(ssts[0])) {
		t.Errorf("Open error = %q; want it to name the directory and the table", msg)
	}
}

// Issue 9.10: Badger's logs go to our logger, at matching levels.
func TestBadgerLogsGoToSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Errorf("e %d\n", 1)
	l.Warningf("w %d", 2)
	l.Infof("i %d", 3)
	l.Debugf("d %d", 4)
	// And Open wires it: Badger's own lines reach our logger.
	var logs syncBuffer
	db, err := Open(Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !strings.Contains(logs.String(), `msg="badger: `) {
		t.Errorf("no Badger log line reached the store's logger:\n%s", logs.String())
	}
	out := buf.String()
	for _, want := range []string{`level=ERROR msg="badger: e 1"`, `level=WARN msg="badger: w 2"`, `level=DEBUG msg="badger: i 3"`, `level=DEBUG msg="badger: d 4"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
