package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg"
)

// backend is what serve and the admin commands use of a store: the store
// package's contract (the proxy's needs plus the operator's tools) and the
// plugins' key/value data (issue 11). *store.DB and *pg.DB both are one.
type backend interface {
	store.Backend
	hostabi.KVStore
}

var (
	_ backend = (*store.DB)(nil)
	_ backend = (*pg.DB)(nil)
)

// storeName names the configured store in messages (never the DSN).
func storeName(cfg *configs.File) string {
	if cfg.Store.Backend == configs.BackendPostgres {
		return "postgres (store.dsn)"
	}
	return cfg.DataDir
}

// openStore opens the configured backend: Badger in data_dir (the default)
// or PostgreSQL at store.dsn.
func openStore(cfg *configs.File, log *slog.Logger) (backend, error) {
	kr := openKeyring(cfg, log)
	sl := log.With("component", "store")
	if cfg.Store.Backend != configs.BackendPostgres {
		db, err := store.Open(store.Options{
			Dir:       cfg.DataDir,
			Keyring:   kr,
			Logger:    sl,
			DedupeTTL: cfg.Webhooks.DedupeTTL.Std(),
		})
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return db, nil
	}
	dsn, err := cfg.Store.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pg.Open(ctx, pg.Options{
		DSN:       dsn.Reveal(),
		MaxConns:  int32(cfg.Store.MaxConns),
		Keyring:   kr,
		Logger:    sl,
		DedupeTTL: cfg.Webhooks.DedupeTTL.Std(),
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// sweep removes expired rows now and then on backends that need it
// (Badger expires records itself).
func sweep(ctx context.Context, db backend, log *slog.Logger) {
	s, ok := db.(interface{ Sweep() error })
	if !ok {
		return
	}
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(); err != nil && !errors.Is(err, store.ErrClosed) {
				log.Warn("store sweep failed; will retry", "err", err)
			}
		}
	}
}
