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
	// LinkToken, optional, names the link token whose Link session made
	// PublicToken; without it the caller's recent link tokens are searched.
	LinkToken string `json:"link_token"`
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
	if !s.budget.allow(tn.Name, id.Subject, s.now()) {
		return ErrPlaidBudget
	}
	pctx, cancel := s.plaidCtx()
	defer cancel()
	tok, exp, err := tn.plaid.linkToken(pctx, tn.Name, id.Subject, accessToken)
	if err != nil {
		return err
	}
	// Issue 9.6: bind the Link session to this tenant and user, durably,
	// before the token leaves: an exchange checks the binding.
	if err := s.db.SaveLinkSession(store.LinkSession{
		Tenant: tn.Name, User: id.Subject, LinkToken: tok, ItemID: req.ItemID,
		CreatedAt: s.now().UTC(), Expiration: exp.UTC(),
	}); err != nil {
		return fmt.Errorf("%w: save link session: %w", ErrStoreDown, err)
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
	if !s.budget.allow(tn.Name, it.User, s.now()) {
		return it // the user's Plaid calls are spent: the stored state
	}
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
		// Not over a confirmation written since it was read (applyEvent).
		if x.State == store.StateLoginRequired && x.CheckedAt.Equal(it.CheckedAt) {
			x.State = store.StateOK
			x.UpdatedAt = s.now().UTC()
			x.CheckedAt = x.UpdatedAt
		}
		return nil
	})
	if err != nil {
		return it
	}
	return upd
}
