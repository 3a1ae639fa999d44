//go:build unix

package hostabi

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkPrivateDir refuses (ErrCacheDir) a directory that is not owned by
// this process's user or that its group or others may write, and one under
// a directory that someone other than this user or root could rename it
// out of: an ancestor writable by group or others must be sticky (/tmp),
// as OpenSSH's StrictModes asks of a home directory.
func checkPrivateDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if err := ownedPrivately(real, fi); err != nil {
		return err
	}
	uid := uint32(os.Geteuid())
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !ok:
		case st.Uid != uid && st.Uid != 0:
			return fmt.Errorf("%w: %s is owned by uid %d", ErrCacheDir, p, st.Uid)
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
			return fmt.Errorf("%w: %s is writable by group or others (mode %v)", ErrCacheDir, p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// ownedPrivately refuses a file or directory that is not this user's or that
// group or others may write.
func ownedPrivately(p string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%w: %s is owned by uid %d", ErrCacheDir, p, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %v)", ErrCacheDir, p, fi.Mode().Perm())
	}
	return nil
}
