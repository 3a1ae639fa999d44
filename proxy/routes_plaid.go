package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/store"
)

// linkTokenRequest is the optional body of POST /api/plaid/link-token.
type linkTokenRequest struct {
	ItemID string `json:"item_id"` // asks for an update-mode token for this item
}

// exchangeRequest is the body of POST /api/plaid/exchange.
type exchangeRequest struct {
	PublicToken string `json:"public_token"`
}

// decodeBody decodes a small JSON object strictly: one object, known fields,
// nothing after it.
func decodeBody(body []byte, v any, optional bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequest("invalid_json", "a JSON body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute) && ute.Field == "":
			return badRequest("invalid_json", "the body must be a JSON object")
		case errors.As(err, &ute):
			return badRequest("invalid_field", "field %q has the wrong type", ute.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return badRequest("unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return badRequest("invalid_json", "the body is not valid JSON")
	}
	if dec.More() {
		return badRequest("invalid_json", "the body must be a single JSON object")
	}
	return nil
}

func (s *Server) plaidCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base, s.opts.PlaidTimeout)
}

func (s *Server) linkToken(ctx *fasthttp.RequestCtx, tn *tenant, id Identity) error {
	var req linkTokenRequest
	if err := decodeBody(ctx.PostBody(), &req, true); err != nil {
		return err
	}
	accessToken := ""
	if req.ItemID != "" {
		if len(req.ItemID) > 128 {
			return badRequest("invalid_field", "item_id is too long")
		}
		it, err := s.db.Item(tn.Name, req.ItemID)
		if err != nil || it.User != id.Subject {
			// Someone else's item and a missing one look the same.
			return fmt.Errorf("%w: item", ErrNotFound)
		}
		at, err := s.db.AccessToken(tn.Name, id.Subject, req.ItemID)
		if err != nil {
			return fmt.Errorf("%w: open token: %w", ErrStoreDown, err)
		}
		accessToken = at
	}
	pctx, cancel := s.plaidCtx()
	defer cancel()
	tok, exp, err := tn.plaid.linkToken(pctx, tn.Name, id.Subject, accessToken)
	if err != nil {
		return err
	}
	out := struct {
		LinkToken  string    `json:"link_token"`
		Expiration time.Time `json:"expiration"`
		Mode       string    `json:"mode"`
		ItemID     string    `json:"item_id,omitempty"`
	}{tok, exp.UTC(), "create", req.ItemID}
	if req.ItemID != "" {
		out.Mode = "update"
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
	return nil
}

type exchangeResponse struct {
	ItemID        string  `json:"item_id"`
	InstitutionID *string `json:"institution_id"`
	Persisted     bool    `json:"persisted"`
	PersistHint   *string `json:"persist_hint"`
}

func (s *Server) exchange(ctx *fasthttp.RequestCtx, tn *tenant, id Identity) error {
	var req exchangeRequest
	if err := decodeBody(ctx.PostBody(), &req, false); err != nil {
		return err
	}
	switch {
	case req.PublicToken == "":
		return badRequest("missing_public_token", "public_token is required")
	case len(req.PublicToken) > 256 || !strings.HasPrefix(req.PublicToken, "public-"):
		return badRequest("invalid_public_token", "public_token is not a Plaid public token")
	}
	pctx, cancel := s.plaidCtx()
	defer cancel()
	accessToken, itemID, err := tn.plaid.exchange(pctx, req.PublicToken)
	if err != nil {
		return err
	}
	// From here on we hold a billable item: it is either stored or removed.
	info, err := tn.plaid.itemGet(pctx, accessToken)
	if err != nil {
		s.log.Warn("item/get after exchange failed; storing without institution", "tenant", tn.Name, "item_id", itemID, "err", err)
	}
	resp := exchangeResponse{ItemID: itemID}
	if info.InstitutionID != "" {
		inst := info.InstitutionID
		resp.InstitutionID = &inst
	}
	if info.InstitutionID != "" {
		existing, err := s.db.Items(tn.Name, id.Subject)
		if err == nil {
			for _, it := range existing {
				if it.InstitutionID == info.InstitutionID && it.State != store.StateRevoked {
					s.removeAtPlaid(tn, accessToken, itemID, "duplicate institution")
					return &conflictError{
						code:   "duplicate_institution",
						msg:    "this user already has a linked item at this institution; use update mode on it instead",
						itemID: it.ItemID,
					}
				}
			}
		}
	}
	now := s.now().UTC()
	state := store.StateOK
	if info.ErrorCode == "ITEM_LOGIN_REQUIRED" {
		state = store.StateLoginRequired
	}
	err = s.db.SaveItem(store.Item{
		Tenant: tn.Name, User: id.Subject, ItemID: itemID, InstitutionID: info.InstitutionID,
		State: state, CreatedAt: now, UpdatedAt: now,
	}, accessToken)
	if err != nil {
		reason, hint := persistHint(err)
		tn.m.m.persistFailed.WithLabelValues(tn.Name, reason).Inc()
		s.log.Error("access token not persisted; removing the item at Plaid",
			"tenant", tn.Name, "item_id", itemID, "reason", reason, "err", err)
		s.removeAtPlaid(tn, accessToken, itemID, reason)
		resp.PersistHint = &hint
		writeJSON(ctx, fasthttp.StatusOK, resp)
		return nil
	}
	resp.Persisted = true
	s.log.Info("item linked", "tenant", tn.Name, "item_id", itemID, "institution_id", info.InstitutionID)
	writeJSON(ctx, fasthttp.StatusOK, resp)
	return nil
}

// persistHint tells the admin what to do when a token could not be saved.
func persistHint(err error) (reason, hint string) {
	switch {
	case errors.Is(err, store.ErrNoKey):
		return "no_key", "no encryption key is configured: set the keyring named by `keys` in the config (e.g. SAFECLOSE_KEYS=id:base64-32-bytes; `safeclose keys gen` makes one) and restart; the user must link again"
	case errors.Is(err, store.ErrKeyMismatch):
		return "key_mismatch", "the configured encryption key does not match the stored data (wrong or rotated-out key): restore the previous key as a secondary in the keyring and restart; the user must link again"
	case errors.Is(err, store.ErrDuplicate):
		return "duplicate_item", "this item_id is already stored for another user; investigate before relinking"
	case errors.Is(err, store.ErrClosed):
		return "store_closed", "the store is closed (shutting down or failed): check the data directory and restart; the user must link again"
	}
	return "store_error", "the store refused the write (disk full, permissions or corruption?): check the logs and the data directory; the user must link again"
}

// removeAtPlaid removes an item we will not keep, so nothing billable is orphaned.
func (s *Server) removeAtPlaid(tn *tenant, accessToken, itemID, why string) {
	ctx, cancel := s.plaidCtx()
	defer cancel()
	if err := tn.plaid.itemRemove(ctx, accessToken); err != nil {
		s.log.Error("could not remove unkept item at Plaid: remove it by hand", "tenant", tn.Name, "item_id", itemID, "why", why, "err", err)
		return
	}
	s.log.Info("removed unkept item at Plaid", "tenant", tn.Name, "item_id", itemID, "why", why)
}

type statusItem struct {
	ItemID           string     `json:"item_id"`
	InstitutionID    *string    `json:"institution_id"`
	State            string     `json:"state"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	LastEvent        string     `json:"last_event,omitempty"`
	LastEventAt      *time.Time `json:"last_event_at,omitempty"`
	ConsentExpiresAt *time.Time `json:"consent_expires_at,omitempty"`
}

func (s *Server) status(ctx *fasthttp.RequestCtx, tn *tenant, id Identity) error {
	items, err := s.db.Items(tn.Name, id.Subject)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStoreDown, err)
	}
	out := struct {
		Linked bool         `json:"linked"`
		Items  []statusItem `json:"items"`
	}{Items: make([]statusItem, 0, len(items))}
	for _, it := range items {
		if it.State == store.StateLoginRequired {
			it = s.refreshLogin(tn, it)
		}
		si := statusItem{
			ItemID: it.ItemID, State: string(it.State),
			CreatedAt: it.CreatedAt.UTC(), UpdatedAt: it.UpdatedAt.UTC(), LastEvent: it.LastEvent,
		}
		if it.InstitutionID != "" {
			inst := it.InstitutionID
			si.InstitutionID = &inst
		}
		if !it.LastEventAt.IsZero() {
			t := it.LastEventAt.UTC()
			si.LastEventAt = &t
		}
		if !it.ConsentExpiresAt.IsZero() {
			t := it.ConsentExpiresAt.UTC()
			si.ConsentExpiresAt = &t
		}
		if it.State != store.StateRevoked {
			out.Linked = true
		}
		out.Items = append(out.Items, si)
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
	return nil
}

// refreshLogin re-reads an item that needs re-login from Plaid: after the user
// finishes update mode Plaid sends nothing (LOGIN_REPAIRED is only for repairs
// outside the app), so the status route is where the repair is noticed.
// On any failure the stored state is returned unchanged.
func (s *Server) refreshLogin(tn *tenant, it store.Item) store.Item {
	at, err := s.db.AccessToken(tn.Name, it.User, it.ItemID)
	if err != nil {
		return it
	}
	ctx, cancel := context.WithTimeout(s.base, min(s.opts.PlaidTimeout, 3*time.Second))
	defer cancel()
	info, err := tn.plaid.itemGet(ctx, at)
	if err != nil || info.ErrorCode == "ITEM_LOGIN_REQUIRED" {
		return it
	}
	upd, err := s.db.UpdateItem(tn.Name, it.ItemID, func(x *store.Item) error {
		if x.State == store.StateLoginRequired {
			x.State = store.StateOK
			x.UpdatedAt = s.now().UTC()
		}
		return nil
	})
	if err != nil {
		return it
	}
	return upd
}
