package hostabi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/tetratelabs/wazero"
)

// ErrCacheDir is a compilation cache directory that someone other than this
// process's user could write. wazero's file cache holds native machine code
// that is run as loaded, checked only by a CRC and keyed by the module's
// hash: whoever can write an entry chooses the code Safeclose runs. See
// RATIONALE.md "Why the compilation cache must be private".
var ErrCacheDir = errors.New("hostabi: compilation cache directory writable by others")

// openFileCache creates dir (0700) if needed, refuses it unless only this
// user can write it and its entries, and opens wazero's cache in it.
func openFileCache(ctx context.Context, dir string) (wazero.CompilationCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hostabi: compilation cache %s: %w", dir, err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, fmt.Errorf("hostabi: compilation cache %s: %w", dir, err)
	}
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hostabi: compilation cache %s: %w", dir, err)
	}
	// wazero keeps its entries in a per-version subdirectory it has just
	// created or found: check it and what is in it too.
	subs, err := filepath.Glob(filepath.Join(dir, "wazero-*-"+runtime.GOARCH+"-"+runtime.GOOS))
	if err == nil {
		for _, s := range subs {
			if err = checkPrivateTree(s); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("hostabi: compilation cache %s: %w", dir, errors.Join(err, c.Close(ctx)))
	}
	return c, nil
}

// checkPrivateTree checks dir (as checkPrivateDir) and each entry in it.
func checkPrivateTree(dir string) error {
	if err := checkPrivateDir(dir); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := ownedPrivately(p, fi); err != nil {
			return err
		}
	}
	return nil
}
