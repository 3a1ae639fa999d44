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
	fs.BoolVar(&o.reverse, "reverse", false, "copy PostgreSQL into data_dir instead; data_dir must hold no records, unless it is the destination of an unfinished -reverse (which this resumes)")
	fs.BoolVar(&o.merge, "merge", false, "with -reverse: copy into a data_dir that already holds records, keeping every record it has as it is there")
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
// -reverse refuses a data_dir that already holds records (typically the
// store from before the move to PostgreSQL) unless -merge is given: since
// records already there are left alone, items removed or changed on
// PostgreSQL would come back in their old form, tokens with them, and
// delivered webhooks would be queued again. A data_dir carrying the mark is
// the destination of a -reverse cut short and is resumed without -merge.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o migrateOpts
	if err := parseFlags(migrateFlagSet(&o), args, stdout); err != nil {
		return err
	}
	cfgPath, reverse := &o.config, &o.reverse
	if o.merge && !o.reverse {
		return usageErrorf("migrate", "-merge applies to -reverse only")
	}
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
	pdb, err := pg.Open(octx, pg.Options{DSN: dsn.Reveal(), MaxConns: int32(max(cfg.Store.MaxConns, 2)), Logger: newLogger(stderr, "error")})
	if err != nil {
		return fmt.Errorf("open postgres: %w", err)
	}
	defer pdb.Close()
	type side interface {
		Export(func(store.Record) error) error
		Import(store.Record) (bool, error)
		Marked() (bool, error)
		Unmark() error
	}
	var from, to side = bdb, pdb
	what, source := cfg.DataDir+" → postgres", cfg.DataDir
	if *reverse {
		from, to, what, source = pdb, bdb, "postgres → "+cfg.DataDir, "postgres"
	}
	// A source that is itself a copy cut short would pass on its gaps, and
	// the destination's mark is only written once the source is known whole.
	if marked, err := from.Marked(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", source, err)
	} else if marked {
		return fmt.Errorf("migrate: %s is the destination of a migrate that did not finish; run that migrate again to the end first", source)
	}
	// Checked before the mark is written: a data_dir with the mark is one a
	// -reverse (or -reverse -merge) was already let into, so it resumes.
	if *reverse && !o.merge {
		if err := refuseHeldDataDir(bdb, cfg.DataDir); err != nil {
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

// refuseHeldDataDir returns an error when the Badger store in dir holds
// records and does not carry store.MigrateMark.
func refuseHeldDataDir(bdb *store.DB, dir string) error {
	if marked, err := bdb.Marked(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", dir, err)
	} else if marked {
		return nil
	}
	held, err := bdb.Holds()
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", dir, err)
	}
	if held {
		abs, _ := filepath.Abs(dir)
		return fmt.Errorf("migrate: data_dir %s (%s) already holds records; -reverse would merge PostgreSQL into them, and items, tokens and queue entries removed or changed on PostgreSQL since would come back as they are there: move the directory aside (or set data_dir to a new one) and run again, or pass -merge to merge on purpose", dir, abs)
	}
	return nil
}
