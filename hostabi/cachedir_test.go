//go:build unix

package hostabi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// A compilation cache that another local user can write lets that user
// plant native code that the engine runs: wazero checks an entry with a
// CRC only. NewEngine refuses such a directory.
func TestEngineRefusesCacheOthersCanWrite(t *testing.T) {
	t.Parallel()
	// versioned returns wazero's per-version subdirectory of dir, made by
	// opening an engine on it once.
	versioned := func(t *testing.T, dir string) string {
		t.Helper()
		e, err := hostabi.NewEngine(t.Context(), hostabi.Options{CacheDir: dir})
		if err != nil {
			t.Fatalf("NewEngine(private %s) = %v", dir, err)
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		subs, err := filepath.Glob(filepath.Join(dir, "wazero-*"))
		if err != nil || len(subs) != 1 {
			t.Fatalf("wazero subdirectories = %v, %v; want one", subs, err)
		}
		return subs[0]
	}
	chmod := func(t *testing.T, p string, m os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the cache dir
		root  bool                      // needs to chown
	}{
		{"world-writable", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "c")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			chmod(t, d, 0o777)
			return d
		}, false},
		{"group-writable", func(t *testing.T) string {
			d := t.TempDir()
			chmod(t, d, 0o770)
			return d
		}, false},
		{"parent writable, not sticky", func(t *testing.T) string {
			p := t.TempDir()
			chmod(t, p, 0o777)
			return filepath.Join(p, "wasm-cache") // created 0700 by NewEngine
		}, false},
		{"version directory group-writable", func(t *testing.T) string {
			d := t.TempDir()
			chmod(t, versioned(t, d), 0o770)
			return d
		}, false},
		{"entry planted by another user", func(t *testing.T) string {
			d := t.TempDir()
			f := filepath.Join(versioned(t, d), "00")
			if err := os.WriteFile(f, []byte("native code"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return d
		}, true},
		{"owned by another user", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Chown(d, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return d
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.root && os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			dir := tt.setup(t)
			e, err := hostabi.NewEngine(t.Context(), hostabi.Options{CacheDir: dir})
			if err == nil {
				e.Close(context.Background())
			}
			if !errors.Is(err, hostabi.ErrCacheDir) {
				t.Errorf("NewEngine(CacheDir: %s) = %v, want ErrCacheDir", dir, err)
			}
			if _, _, err := hostabi.InspectWasmCached(t.Context(), nil, dir); !errors.Is(err, hostabi.ErrCacheDir) {
				t.Errorf("InspectWasmCached(%s) = %v, want ErrCacheDir", dir, err)
			}
		})
	}
}

// A missing cache directory is created readable and writable by its user
// alone, whatever the umask.
func TestEngineCreatesCachePrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "wasm-cache")
	e, err := hostabi.NewEngine(t.Context(), hostabi.Options{CacheDir: dir})
	if err != nil {
		t.Fatalf("NewEngine(CacheDir: %s) = %v", dir, err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o700 {
			t.Errorf("mode of %s = %v, want 0700", p, m)
		}
	}
}
