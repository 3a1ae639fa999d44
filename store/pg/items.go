package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/safeclose/safeclose/store"
)

// SaveItem seals accessToken under the primary key and stores the item and
// its owner record in one transaction. An item held by another owner is
// store.ErrDuplicate.
func (db *DB) SaveItem(it store.Item, accessToken string) error {
	if db.keyErr != nil {
		return db.keyErr
	}
	if it.Tenant == "" || it.User == "" || it.ItemID == "" || strings.ContainsRune(it.Tenant+it.User+it.ItemID, 0) {
		return fmt.Errorf("store: save item: tenant, user and item_id are required")
	}
	rec, err := db.kr.EncodeItem(it, accessToken)
	if err != nil {
		return fmt.Errorf("store: save item: %w", err)
	}
	owner := db.kr.EncodeOwner(it.Tenant, it.User, it.ItemID)
	return db.tx(func(ctx context.Context, tx pgx.Tx) error {
		var cur []byte
		err := tx.QueryRow(ctx, "SELECT rec FROM sc_owners WHERE item_id = $1 FOR UPDATE", it.ItemID).Scan(&cur)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// The primary key makes a concurrent first save of the same item fail, not both win.
			if _, err := tx.Exec(ctx, "INSERT INTO sc_owners (item_id, rec) VALUES ($1, $2)", it.ItemID, owner); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			t, u, _, err := db.kr.DecodeOwner(it.ItemID, cur)
			if err != nil {
				return db.corrupt(err, "owner index", "", it.ItemID)
			}
			if t != it.Tenant || u != it.User {
				return fmt.Errorf("%w: item %s belongs to another owner", store.ErrDuplicate, it.ItemID)
			}
			if _, err := tx.Exec(ctx, "UPDATE sc_owners SET rec = $2 WHERE item_id = $1", it.ItemID, owner); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sc_items (tenant, item_id, user_id, created_at, rec) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant, item_id) DO UPDATE SET user_id = EXCLUDED.user_id, created_at = EXCLUDED.created_at, rec = EXCLUDED.rec`,
			it.Tenant, it.ItemID, it.User, it.CreatedAt, rec); err != nil {
			return err
		}
		return db.markUsed(ctx, tx)
	})
}

// markUsed records that the primary key authenticates stored records.
func (db *DB) markUsed(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, "UPDATE sc_keys SET used = true WHERE id = $1 AND NOT used", db.kr.PrimaryID())
	return err
}

// getItem reads and checks an item record.
func (db *DB) getItem(ctx context.Context, q querier, tenant, itemID string, lock bool) (store.SealedItem, error) {
	sql := "SELECT rec FROM sc_items WHERE tenant = $1 AND item_id = $2"
	if lock {
		sql += " FOR UPDATE"
	}
	var rec []byte
	if err := q.QueryRow(ctx, sql, tenant, itemID).Scan(&rec); err != nil {
		return store.SealedItem{}, mapErr(err)
	}
	si, err := db.kr.DecodeItem(tenant, itemID, rec)
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) && db.keyErr != nil {
			err = db.keyErr
		}
		return store.SealedItem{}, db.corrupt(err, "item", tenant, itemID)
	}
	return si, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// corrupt names the record in err and logs an integrity failure.
func (db *DB) corrupt(err error, what, tenant, itemID string) error {
	if errors.Is(err, store.ErrCorrupt) {
		db.log.Error("stored record failed its integrity check; refusing to serve it (restore the database from a backup)",
			"record", what, "tenant", tenant, "item_id", itemID)
	}
	return fmt.Errorf("store: %s %s: %w", what, itemID, err)
}

// Item finds an item by id within a tenant.
func (db *DB) Item(tenant, itemID string) (store.Item, error) {
	var si store.SealedItem
	err := db.op(func(ctx context.Context) (err error) {
		si, err = db.getItem(ctx, db.pool, tenant, itemID, false)
		return err
	})
	return si.Item, err
}

// Items lists a user's items, oldest first. Tokens are not included.
func (db *DB) Items(tenant, user string) ([]store.Item, error) {
	var out []store.Item
	err := db.op(func(ctx context.Context) error {
		rows, err := db.pool.Query(ctx, "SELECT item_id, rec FROM sc_items WHERE tenant = $1 AND user_id = $2 ORDER BY created_at, item_id", tenant, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var rec []byte
			if err := rows.Scan(&id, &rec); err != nil {
				return err
			}
			si, err := db.kr.DecodeItem(tenant, id, rec)
			if err == nil && si.User != user {
				err = store.ErrCorrupt
			}
			if err != nil {
				return db.corrupt(err, "item", tenant, id)
			}
			out = append(out, si.Item)
		}
		return rows.Err()
	})
	return out, err
}

// AccessToken opens an item's token for its owner.
func (db *DB) AccessToken(tenant, user, itemID string) (string, error) {
	var si store.SealedItem
	err := db.op(func(ctx context.Context) (err error) {
		si, err = db.getItem(ctx, db.pool, tenant, itemID, false)
		return err
	})
	if err != nil {
		return "", err
	}
	if si.User != user {
		return "", store.ErrNotFound
	}
	return db.kr.Token(si)
}

// SetAccessToken seals a new token for an item user holds, in one
// transaction with the item as it is stored then (the row locked): a state
// written since the caller last read the item is kept. An item that is
// missing, or held by another user, is store.ErrNotFound.
func (db *DB) SetAccessToken(tenant, user, itemID, accessToken string) error {
	if db.keyErr != nil {
		return db.keyErr
	}
	return db.tx(func(ctx context.Context, tx pgx.Tx) error {
		si, err := db.getItem(ctx, tx, tenant, itemID, true)
		if err != nil {
			return err
		}
		if si.User != user {
			return store.ErrNotFound
		}
		rec, err := db.kr.EncodeItem(si.Item, accessToken)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE sc_items SET rec = $3 WHERE tenant = $1 AND item_id = $2", tenant, itemID, rec); err != nil {
			return err
		}
		return db.markUsed(ctx, tx)
	})
}

// UpdateItem applies fn to the item in one transaction. fn must not change
// Tenant, User or ItemID.
func (db *DB) UpdateItem(tenant, itemID string, fn func(*store.Item) error) (store.Item, error) {
	var out store.Item
	if db.keyErr != nil {
		return out, db.keyErr
	}
	err := db.tx(func(ctx context.Context, tx pgx.Tx) error {
		si, err := db.getItem(ctx, tx, tenant, itemID, true)
		if err != nil {
			return err
		}
		it := si.Item
		if err := fn(&it); err != nil {
			return err
		}
		rec, err := db.kr.Reencode(si, it)
		if err != nil {
			return err
		}
		it.Tenant, it.User, it.ItemID = si.Tenant, si.User, si.ItemID
		out = it
		if _, err := tx.Exec(ctx, "UPDATE sc_items SET rec = $3 WHERE tenant = $1 AND item_id = $2", tenant, itemID, rec); err != nil {
			return err
		}
		return db.markUsed(ctx, tx)
	})
	return out, err
}

// DeleteItem removes an item and its owner record.
func (db *DB) DeleteItem(tenant, itemID string) error {
	return db.tx(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := db.getItem(ctx, tx, tenant, itemID, true); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM sc_items WHERE tenant = $1 AND item_id = $2", tenant, itemID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM sc_owners WHERE item_id = $1", itemID)
		return err
	})
}

// ItemOwner reports which tenant and user hold itemID, or store.ErrNotFound.
func (db *DB) ItemOwner(itemID string) (tenant, user string, err error) {
	err = db.op(func(ctx context.Context) error {
		var rec []byte
		if err := db.pool.QueryRow(ctx, "SELECT rec FROM sc_owners WHERE item_id = $1", itemID).Scan(&rec); err != nil {
			return err
		}
		var derr error
		if tenant, user, _, derr = db.kr.DecodeOwner(itemID, rec); derr != nil {
			return db.corrupt(derr, "owner index", "", itemID)
		}
		return nil
	})
	return tenant, user, err
}

// Rotate re-seals every token and re-authenticates every item and owner
// record not already under the primary key, 100 per transaction; it returns
// how many items it rewrote.
func (db *DB) Rotate() (int, error) {
	if db.keyErr != nil {
		return 0, db.keyErr
	}
	primary := db.kr.PrimaryID()
	n := 0
	after := [2]string{}
	for {
		var batch int
		err := db.tx(func(ctx context.Context, tx pgx.Tx) error {
			batch = 0
			rows, err := tx.Query(ctx, "SELECT tenant, item_id, rec FROM sc_items WHERE (tenant, item_id) > ($1, $2) ORDER BY tenant, item_id LIMIT 100 FOR UPDATE", after[0], after[1])
			if err != nil {
				return err
			}
			type row struct {
				Tenant, ItemID string
				Rec            []byte
			}
			rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
			if err != nil {
				return err
			}
			for _, r := range rs {
				batch++
				after = [2]string{r.Tenant, r.ItemID}
				si, err := db.kr.DecodeItem(r.Tenant, r.ItemID, r.Rec)
				if err != nil {
					return fmt.Errorf("store: rotate: %w", db.corrupt(err, "item", r.Tenant, r.ItemID))
				}
				// UpdateItem re-authenticates the item but not its owner
				// record, so the owner's key is checked on its own.
				var orec []byte
				ownerMAC := primary
				switch err := tx.QueryRow(ctx, "SELECT rec FROM sc_owners WHERE item_id = $1 FOR UPDATE", r.ItemID).Scan(&orec); {
				case errors.Is(err, pgx.ErrNoRows):
				case err != nil:
					return err
				default:
					if _, _, ownerMAC, err = db.kr.DecodeOwner(r.ItemID, orec); err != nil {
						return fmt.Errorf("store: rotate: %w", db.corrupt(err, "owner index", "", r.ItemID))
					}
				}
				if si.SealKeyID == primary && si.MACKeyID == primary && ownerMAC == primary {
					continue
				}
				rec, err := db.kr.Reencode(si, si.Item)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE sc_items SET rec = $3 WHERE tenant = $1 AND item_id = $2", r.Tenant, r.ItemID, rec); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE sc_owners SET rec = $2 WHERE item_id = $1", r.ItemID, db.kr.EncodeOwner(si.Tenant, si.User, si.ItemID)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if batch < 100 {
			break
		}
	}
	if err := db.rotateQueue(primary); err != nil {
		return n, err
	}
	err := db.tx(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE sc_keys SET used = (id = $1)", primary); err != nil {
			return err
		}
		return db.markUsed(ctx, tx)
	})
	return n, err
}

// rotateQueue authenticates under the primary key every queue record
// (queued or dead) another keyring key authenticated, in batches. One no
// key authenticated stays as it is: rotating must not vouch for it
// (store/entry_auth.go).
func (db *DB) rotateQueue(primary string) error {
	after := ""
	for {
		var batch int
		err := db.tx(func(ctx context.Context, tx pgx.Tx) error {
			batch = 0
			rows, err := tx.Query(ctx, "SELECT id, rec FROM sc_queue WHERE id > $1 ORDER BY id LIMIT 100 FOR UPDATE", after)
			if err != nil {
				return err
			}
			type row struct {
				ID  string
				Rec []byte
			}
			rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
			if err != nil {
				return err
			}
			for _, r := range rs {
				batch++
				after = r.ID
				if id := store.EntryKeyID(r.Rec); id == "" || id == primary {
					continue
				}
				e, err := db.kr.OpenEntry(r.ID, r.Rec)
				if err != nil {
					continue
				}
				rec, err := db.kr.SealEntry(e)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE sc_queue SET rec = $2 WHERE id = $1", r.ID, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || batch < 100 {
			return err
		}
	}
}
