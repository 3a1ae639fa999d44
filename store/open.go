package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"
)

// markerName is the file Safeclose writes in a data directory at first open,
// so "this directory once held a store" is known even if Badger's own files
// are gone.
const markerName = "SAFECLOSE"

// ErrDamaged is a data directory Safeclose refuses to open because opening it
// would lose data (a missing or broken MANIFEST) or crash (a broken table).
var ErrDamaged = errors.New("store: data directory is damaged")

// damaged builds the refusal: it names the directory and the way out.
func damaged(dir, what string) error {
	return fmt.Errorf("%w: %s: %s; refusing to open it, because Badger would start empty and delete the tables it cannot account for. "+
		"Stop, keep a copy of the directory as it is, and restore the directory from a backup (RATIONALE.md \"Why refuse a damaged data directory\")",
		ErrDamaged, dir, what)
}

// checkDir looks at a data directory before Badger opens it (Issue 9.10,
// 9.12). A directory with data (tables, value logs, write-ahead logs or our
// marker) must have a MANIFEST that Badger can replay and that accounts for
// the tables; each table's footer and index checksum must be intact, because
// Badger opens tables in goroutines and panics on a truncated one.
// Unreferenced tables next to a complete MANIFEST (left by a crash during a
// flush or compaction) are moved aside, never deleted.
func checkDir(dir string, bo badger.Options, log *slog.Logger) error {
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", dir, err)
	}
	tables := map[uint64]string{}
	hasData := false
	for _, e := range es {
		name := e.Name()
		switch {
		case name == markerName:
			hasData = true
		case strings.HasSuffix(name, ".sst"):
			if id, ok := table.ParseFileID(name); ok {
				tables[id] = name
				hasData = true
			}
		case strings.HasSuffix(name, ".vlog"), strings.HasSuffix(name, ".mem"):
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				hasData = true
			}
		}
	}
	mpath := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(mpath)
	if errors.Is(err, os.ErrNotExist) {
		if hasData {
			return damaged(dir, "it holds data but its MANIFEST is missing")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", mpath, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: open %s: %w", mpath, err)
	}
	m, valid, err := badger.ReplayManifestFile(f, bo.ExternalMagicVersion, bo)
	if err != nil {
		return damaged(dir, fmt.Sprintf("its MANIFEST cannot be read (%v)", err))
	}
	torn := valid < fi.Size()
	var unreferenced, missing []string
	for id, name := range tables {
		if _, ok := m.Tables[id]; !ok {
			unreferenced = append(unreferenced, name)
		}
	}
	for id := range m.Tables {
		if _, ok := tables[id]; !ok {
			missing = append(missing, table.IDToFilename(id))
		}
	}
	sort.Strings(unreferenced)
	sort.Strings(missing)
	switch {
	case len(missing) > 0:
		return damaged(dir, "its MANIFEST names table files that are gone: "+strings.Join(missing, ", "))
	case torn && len(unreferenced) > 0:
		return damaged(dir, "its MANIFEST is truncated and no longer accounts for "+strings.Join(unreferenced, ", "))
	}
	for id := range m.Tables {
		if err := checkTable(filepath.Join(dir, tables[id])); err != nil {
			return damaged(dir, err.Error())
		}
	}
	if len(unreferenced) > 0 {
		aside := filepath.Join(dir, "unreferenced-"+strconv.FormatInt(time.Now().Unix(), 10))
		if err := os.Mkdir(aside, 0o700); err != nil {
			return fmt.Errorf("store: open %s: %w", dir, err)
		}
		for _, name := range unreferenced {
			if err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name)); err != nil {
				return fmt.Errorf("store: open %s: %w", dir, err)
			}
		}
		log.Warn("table files the MANIFEST does not reference were moved aside, not deleted (usually left by a crash during a flush or compaction); remove them once the data is known to be complete",
			"dir", aside, "files", unreferenced)
	}
	return nil
}

// checkTable reads a table's footer and checks its index checksum, as Badger
// does at open, but returns an error where Badger would panic.
func checkTable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	bad := func(why string) error { return fmt.Errorf("table %s is damaged (%s)", filepath.Base(path), why) }
	read := func(off, n int64) ([]byte, error) {
		if off < 0 || n < 0 || off+n > fi.Size() {
			return nil, bad("truncated")
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return b, nil
	}
	pos := fi.Size() - 4
	b, err := read(pos, 4)
	if err != nil {
		return err
	}
	n := int64(binary.BigEndian.Uint32(b))
	pos -= n
	b, err = read(pos, n)
	if err != nil {
		return err
	}
	var chk pb.Checksum
	if err := proto.Unmarshal(b, &chk); err != nil {
		return bad("checksum record")
	}
	pos -= 4
	if b, err = read(pos, 4); err != nil {
		return err
	}
	n = int64(binary.BigEndian.Uint32(b))
	pos -= n
	if b, err = read(pos, n); err != nil {
		return err
	}
	if y.VerifyChecksum(b, &chk) != nil {
		return bad("index checksum mismatch")
	}
	return nil
}

// openBadger opens Badger, turning a panic in the calling goroutine into an
// error that names the directory.
func openBadger(bo badger.Options) (bdb *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, err = nil, damaged(bo.Dir, fmt.Sprintf("Badger failed while opening it (%v)", r))
		}
	}()
	return badger.Open(bo)
}

// writeMarker records that dir holds a store, once.
func writeMarker(dir string) error {
	p := filepath.Join(dir, markerName)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("Safeclose data directory (Badger). Do not delete files here by hand; restore the whole directory from a backup instead.\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// badgerLogger sends Badger's logs to slog: errors as errors, warnings as
// warnings, the rest at debug. Badger's default stderr logger is never used.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) {
	if !b.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	b.l.Debug("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	if !b.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	b.l.Debug("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
