package proxy

import "github.com/safeclose/safeclose/store"

// Store is what the proxy needs from a backend: the store package's one
// contract, store.Backend, which *store.DB (Badger) and *pg.DB (PostgreSQL)
// both satisfy and store/storetest checks.
type Store = store.Backend
