package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
)

type migrateOpts struct {
	config  string
	reverse bool
	merge   bool
}

func migrateFlagSet(o *migrateOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "config file: data_dir is the Badger side, store.dsn the PostgreSQL side")
	fs.BoolVar(&o.reverse, "reverse", false, "copy PostgreSQL into data_dir instead")
	fs.BoolVar(&o.merge, "merge", false, "copy into a destination that already holds data, keeping every record it has as it is there")
	return fs
}

// runMigrate copies every record of the Badger store in data_dir into the
// PostgreSQL store at store.dsn (or back with -reverse). Records move as
// stored bytes: tokens stay sealed and no key is needed. A record already
// at the destination is left alone, so a migration can be run again; until
// one runs to the end the destination carries store.MigrateMark, so a serve
// there refuses tokens rather than serve part of the store. Plugin
// KV entries move too (unexpired ones, with their expiry; the quota is not
// applied, see store.(*DB).importKV). Stop every replica first: the queue
// must not move under it.
//
// The destination must hold no data (key records aside) unless -merge is
// given: records already there are left alone, so copying into a store
// that lived on after an earlier move (the Badger data_dir from before the
// move to PostgreSQL, or a database replicas served from) would keep or
// bring back items removed or changed since, tokens with them, and queue
// delivered webhooks again. A destination carrying the mark is one a
// migrate cut short was let into, and is resumed without -merge.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o migrateOpts
	if err := parseFlags(migrateFlagSet(&o), args, stdout); err != nil {
		return err
	}
	cfgPath, reverse := &o.config, &o.reverse
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Store.DSN == "" {
		return errors.New("migrate: the config needs store: {backend: postgres, dsn: …} and the data_dir to copy from or into")
	}
	dsn, err := cfg.Store.DSN.Resolve()
	if err != nil {
		return fmt.Errorf("store.dsn: %w", err)
	}
	// Opening a missing data_dir makes an empty store there, which would be
	// copied as the whole store: a relative data_dir (./data by default)
	// names another directory when migrate runs from elsewhere than serve.
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "MANIFEST")); !*reverse && err != nil {
		abs, _ := filepath.Abs(cfg.DataDir)
		return fmt.Errorf("migrate: data_dir %s (%s) holds no store to copy: %w", cfg.DataDir, abs, err)
	}
	bdb, err := store.Open(store.Options{Dir: cfg.DataDir, Logger: newLogger(stderr, "error")})
	if err != nil {
		return fmt.Errorf("open %s (stop the proxy first): %w", cfg.DataDir, err)
	}
	defer bdb.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Records move as stored bytes, but PostgreSQL keeps a queue entry's
	// attempts, due time and last error in columns: copied to Badger, they
	// go into the record, authenticated again if the keyring can check it
	// (without keys an authenticated one goes as it is stored, those
	// columns lost; store/pg/transfer.go).
	var kr *store.Keyring
	if *reverse {
		if kr, err = readKeyring(cfg); err != nil {
			// Without it the copy would still be whole, but queue entries
			// would lose their attempts, due times and last errors.
			return fmt.Errorf("keys: %w", err)
		}
	}
	pdb, err := pg.Open(octx, pg.Options{DSN: dsn.Reveal(), MaxConns: int32(max(cfg.Store.MaxConns, 2)), Keyring: kr, Logger: newLogger(stderr, "error")})
	if err != nil {
		return fmt.Errorf("open postgres: %w", err)
	}
	defer pdb.Close()
	type side interface {
		Export(func(store.Record) error) error
		Import(store.Record) (bool, error)
		Marked() (bool, error)
		Unmark() error
		Holds() (bool, error)
	}
	var from, to side = bdb, pdb
	what, source := cfg.DataDir+" → postgres", cfg.DataDir
	abs, _ := filepath.Abs(cfg.DataDir)
	dest := "the PostgreSQL database (store.dsn)"
	if *reverse {
		from, to, what, source = pdb, bdb, "postgres → "+cfg.DataDir, "postgres"
		dest = fmt.Sprintf("data_dir %s (%s)", cfg.DataDir, abs)
	}
	// A source that is itself a copy cut short would pass on its gaps, and
	// the destination's mark is only written once the source is known whole.
	if marked, err := from.Marked(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", source, err)
	} else if marked {
		return fmt.Errorf("migrate: %s is the destination of a migrate that did not finish; run that migrate again to the end first", source)
	}
	// Checked before the mark is written: a destination with the mark is
	// one a migrate (or a migrate -merge) was already let into: it resumes.
	if !o.merge {
		if err := refuseHeld(to, dest); err != nil {
			return err
		}
	}
	// Until the last record is in, the destination carries store.MigrateMark:
	// a serve there refuses tokens and is not ready, and a second run resumes.
	if _, err := to.Import(store.Record{Kind: store.RecKeyUsed, Key: store.MigrateMark}); err != nil {
		return fmt.Errorf("migrate: mark the destination unfinished: %w", err)
	}
	var read, wrote int
	progress := func() {
		fmt.Fprintf(stdout, "\rmigrate %s: %d records read, %d written, %d already there", what, read, wrote, read-wrote)
	}
	err = from.Export(func(r store.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, err := to.Import(r)
		if err != nil {
			return fmt.Errorf("%s %q: %w", r.Kind, r.Key, err)
		}
		read++
		if ok {
			wrote++
		}
		if read%500 == 0 {
			progress()
		}
		return nil
	})
	progress()
	fmt.Fprintln(stdout)
	if err == nil {
		err = to.Unmark()
	}
	if err != nil {
		return fmt.Errorf("migrate: %w (the destination refuses tokens until a migrate runs to the end: run it again)", err)
	}
	return nil
}

// refuseHeld returns an error when the destination holds data and does
// not carry store.MigrateMark: records already there are left alone, so
// what was removed or changed on the source's side since would come back as
// the destination has it.
func refuseHeld(to interface {
	Marked() (bool, error)
	Holds() (bool, error)
}, dest string) error {
	if marked, err := to.Marked(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", dest, err)
	} else if marked {
		return nil
	}
	held, err := to.Holds()
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", dest, err)
	}
	if held {
		return fmt.Errorf("migrate: %s already holds data; a copy would merge into it, and items, tokens and queue entries it holds in another form (removed, changed or delivered since) would stay or come back as they are there: copy into an empty one (move a data_dir aside, or drop the database's tables), or pass -merge to merge on purpose", dest)
	}
	return nil
}
