package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// LinkSession binds a Plaid link token to the tenant and user that asked for
// it, so an exchange can check that a public token came from the caller's
// own Link session (see RATIONALE.md "Why exchanges are bound to Link
// sessions").
type LinkSession struct {
	Tenant     string    `json:"tenant"`
	User       string    `json:"user"`
	LinkToken  string    `json:"link_token"`        // handed to the browser by design; opens no data
	ItemID     string    `json:"item_id,omitempty"` // update mode: the item the token repairs
	CreatedAt  time.Time `json:"created_at"`
	Expiration time.Time `json:"expiration"`
}

// LinkSessionTail is how long a link session is kept after its token
// expires: Plaid reports session data for up to six hours after a session
// ends, and a public token lives 30 minutes.
const LinkSessionTail = 6 * time.Hour

// LinkTokenHash is the id under which a link token is indexed.
func LinkTokenHash(linkToken string) string {
	h := sha256.Sum256([]byte("safeclose/link_token/v1\x00" + linkToken))
	return hex.EncodeToString(h[:16])
}

func linkKey(hash string) []byte { return []byte("lk/" + hash) }
func linkUserPrefix(tenant, user string) []byte {
	return []byte("lu/" + tenant + "\x00" + user + "\x00")
}

// SaveLinkSession records a link session durably (synced). Records expire
// LinkSessionTail after the token does. A token bound to another tenant or
// user is refused with ErrDuplicate.
func (db *DB) SaveLinkSession(ls LinkSession) error {
	if ls.Tenant == "" || ls.User == "" || ls.LinkToken == "" || strings.ContainsRune(ls.Tenant+ls.User, 0) {
		return errors.New("store: save link session: tenant, user and link token are required")
	}
	b, err := json.Marshal(ls)
	if err != nil {
		return fmt.Errorf("store: save link session: %w", err)
	}
	h := LinkTokenHash(ls.LinkToken)
	ttl := time.Until(ls.Expiration.Add(LinkSessionTail))
	if ttl < time.Minute {
		ttl = time.Minute
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ls.CreatedAt.UnixNano()))
	uk := append(append(linkUserPrefix(ls.Tenant, ls.User), hex.EncodeToString(ts[:])...), h...)
	return db.update(func(txn *badger.Txn) error {
		if err := sameLinkOwner(txn, h, ls); err != nil {
			return err
		}
		if err := txn.SetEntry(badger.NewEntry(linkKey(h), frame(b)).WithTTL(ttl)); err != nil {
			return err
		}
		return txn.SetEntry(badger.NewEntry(uk, []byte(h)).WithTTL(ttl))
	})
}

// sameLinkOwner refuses to bind a link token that is already bound to
// another tenant or user (ErrDuplicate). Plaid never hands the same token
// out twice; if an answer did (a broken or hostile Plaid), rebinding would
// let the second user exchange the first user's public token.
func sameLinkOwner(txn *badger.Txn, h string, ls LinkSession) error {
	it, err := txn.Get(linkKey(h))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cur LinkSession
	if err := it.Value(func(v []byte) error { return unmarshalFramed(v, &cur) }); err != nil {
		return err
	}
	if cur.Tenant != ls.Tenant || cur.User != ls.User {
		return fmt.Errorf("%w: link token is bound to another user", ErrDuplicate)
	}
	return nil
}

// LinkSessionByToken finds the session of a link token, whoever owns it.
func (db *DB) LinkSessionByToken(linkToken string) (LinkSession, error) {
	var ls LinkSession
	err := db.view(func(txn *badger.Txn) error {
		h := LinkTokenHash(linkToken)
		it, err := txn.Get(linkKey(h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return openLinkSession(h, v, &ls) })
	})
	return ls, err
}

// openLinkSession decodes the session stored under lk/<h> and refuses
// (ErrCorrupt) one whose token does not hash to h: a record copied under
// another token's key.
func openLinkSession(h string, v []byte, ls *LinkSession) error {
	if err := unmarshalFramed(v, ls); err != nil {
		return err
	}
	if LinkTokenHash(ls.LinkToken) != h {
		return fmt.Errorf("store: link session %s: stored under another token: %w", h, ErrCorrupt)
	}
	return nil
}

// LinkSessions lists a user's live link sessions (token expired less than
// LinkSessionTail ago), newest first, at most max.
func (db *DB) LinkSessions(tenant, user string, max int) ([]LinkSession, error) {
	var out []LinkSession
	now := db.now()
	err := db.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = linkUserPrefix(tenant, user)
		iter := txn.NewIterator(opts)
		defer iter.Close()
		seek := append(append([]byte{}, opts.Prefix...), 0xff)
		for iter.Seek(seek); iter.Valid() && len(out) < max; iter.Next() {
			h, err := iter.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			it, err := txn.Get(linkKey(string(h)))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var ls LinkSession
			if err := it.Value(func(v []byte) error { return openLinkSession(string(h), v, &ls) }); err != nil {
				return err
			}
			if ls.Tenant != tenant || ls.User != user { // an index entry listing someone else's session
				return fmt.Errorf("store: link sessions of %s: index lists another user's session: %w", tenant, ErrCorrupt)
			}
			if now.After(ls.Expiration.Add(LinkSessionTail)) {
				continue
			}
			out = append(out, ls)
		}
		return nil
	})
	return out, err
}

// ItemOwner reports which tenant and user hold itemID in the global item
// index, or ErrNotFound.
func (db *DB) ItemOwner(itemID string) (tenant, user string, err error) {
	err = db.view(func(txn *badger.Txn) error {
		v, err := db.owner(txn, itemID) // checks the record's MAC (Issue 9.11)
		if err != nil {
			return err
		}
		tenant, user, _ = strings.Cut(string(v), "\x00")
		return nil
	})
	return tenant, user, err
}
