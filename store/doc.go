// Package store is Safeclose's Badger-backed storage: Plaid items with their
// access tokens sealed (AES-256-GCM, see internal/seal), the item_id index,
// the keyring, and the durable webhook queue with group commit.
//
// Invariants:
//   - A plaintext access token never reaches disk: it is sealed before it is
//     put in a transaction, with associated data
//     "access_token/<tenant>/<user>/<item_id>".
//   - Every write is synced before the call returns, by a sync round that
//     began after its commit and that concurrent writers share (durable.go);
//     the one exception is the Deferred view, whose writes are made durable
//     by the round of the queue outcome that follows them.
//   - Enqueue writes the queue entry and its dedupe marker in one transaction,
//     and concurrent Enqueue calls share one synced commit (group commit).
//     Queue outcomes (Complete, Retry, DeadLetter) waiting at once share a
//     transaction and a sync round too (outcomes.go).
//   - One process per data directory (Badger's directory lock).
//   - Webhook leases live in memory (qindex.go), rebuilt as "nobody holds a
//     lease" at Open: only outcomes (Complete, Retry, DeadLetter, Replay) are
//     written. Leasing and QueueLen cost the same at any queue length.
//
// Badger is imported here and nowhere else. store imports nothing from the
// module but its own internal/seal. It is not a stable API (RATIONALE.md,
// "Why the runtime packages are not under internal/").
//
// Other backends: store/pg (PostgreSQL, several replicas) keeps the same
// records, using the codec this package exports (export.go: sealed items,
// authenticated owner records, framing) and the same sentinel errors;
// store/storetest is the conformance suite both pass; transfer.go moves
// records between backends as stored bytes (safeclose migrate).
//
//   - Item records and the owner index are authenticated (HMAC-SHA256,
//     record.go) and verified on every read; queue records carry a length
//     and a CRC-32C and, with a keyring, the same MAC (entry_auth.go: one no
//     keyring key authenticated is never delivered, it becomes a dead
//     letter). A record that fails its check is ErrCorrupt, never served.
//   - Open refuses a directory whose data Badger would drop or crash on
//     (open.go), and writes are refused with ErrUnavailable while free space
//     is below a reserve (space.go), since Badger's mmap'd files SIGBUS on a
//     full disk.
//
// Key layout (all keys are prefixed; values JSON inside the envelopes of
// record.go: authenticated for i/ and x/, CRC-framed for q/ and d/):
//
//	i/<tenant>\x00<item_id>          item (with sealed token)
//	u/<tenant>\x00<user>\x00<item_id> user → item index (empty value)
//	x/<item_id>                      global owner index <tenant>\x00<user>
//	kc/<key id>                      canary sealed under that key
//	ku/<key id>                      marker: some record is sealed with that key
//	q/<entry id>                     queued webhook (raw body, headers, attempts, next attempt)
//	d/<entry id>                     dead-lettered webhook
//	w/<entry id>                     done mark (TTL)
//	m/<tenant>\x00<sha256>           dedupe marker (TTL): the first copy's id; a duplicate only while that entry waits
//	lk/<link token hash>             link session: tenant, user, link token (TTL: expiry + 6h)
//	lu/<tenant>\x00<user>\x00<created><hash>  user → link session index (TTL)
//	ei/<intent id>                   exchange intent, pending until the token is saved
//	o/<tenant>\x00<item_id|intent:id>  orphan: a Plaid item that may exist with no holder
//	kv/<tenant>\x00<key>             plugin key/value entry: expiry (unix ns, 0 = none) ‖ value, CRC-framed
//	kn/<tenant>                      plugin key/value entries held by the tenant (uint32, expired ones included)
package store
