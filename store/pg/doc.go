// Package pg is the PostgreSQL store: the same contract and semantics as
// the Badger store (package store), shared by several Safeclose replicas.
//
// Records are the bytes Badger holds: tokens sealed with the same AAD, item
// and owner records authenticated with the same MAC over the same record
// key (store.Keyring's Encode/Decode helpers), queue entries framed and,
// with a keyring, authenticated (store.Keyring.SealEntry/OpenEntry), Link
// sessions, intents and orphans framed with a length and CRC. The schema is embedded
// and versioned (migrations/), applied at Open under an advisory lock; Open
// refuses a database whose schema is newer than this binary knows.
//
// The queue uses SELECT … FOR UPDATE SKIP LOCKED (RATIONALE.md "Why not
// River"). Leases are times, so entries leased by a replica that died come
// back when their lease ends; the times replicas share are kept in the
// database's clock, not each replica's (clock.go). Errors are package store's sentinels; a lost
// connection is store.ErrUnavailable, and the pool reconnects by itself.
// Enqueue is group-committed (enqueue.go), and so are the workers'
// single-row writes: lease outcomes, Extend and RecordOrphan (writes.go). The plugins' key/value store
// (hostabi.KVStore) is the table plugin_kv (kv.go).
//
// Imports: pgx and package store only.
package pg
