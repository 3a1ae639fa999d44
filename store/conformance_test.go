package store_test

import (
	"testing"

	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/storetest"
)

// Issue 11.1: the Badger store passes the conformance suite that PostgreSQL passes too.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func(t *testing.T, cfg storetest.Config) storetest.Store {
			db, err := store.Open(store.Options{Dir: dir, Keyring: cfg.Keyring, Now: cfg.Now, MinFreeBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			return db
		}
	})
}
