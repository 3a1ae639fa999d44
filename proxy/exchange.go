package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/store"
)

// Exchange fault-injection stages (Options.exchangeFault, tests only).
const (
	faultExchanged = "exchanged" // Plaid answered /item/public_token/exchange
	faultSaved     = "saved"     // the sealed token is stored
)

// maxLinkSearch bounds how many of the caller's recent link tokens an
// exchange without link_token asks /link/token/get about.
const maxLinkSearch = 8

type exchangeResponse struct {
	ItemID        string  `json:"item_id"`
	InstitutionID *string `json:"institution_id"`
	Persisted     bool    `json:"persisted"`
	PersistHint   *string `json:"persist_hint"`
}

func (s *Server) fault(stage string) error {
	if s.opts.exchangeFault == nil {
		return nil
	}
	return s.opts.exchangeFault(stage)
}

// exchange runs POST /api/plaid/exchange. Its rules (RATIONALE.md "Why an
// exchange never removes an item someone holds" and "Why exchanges are
// bound to Link sessions"):
//   - the public token must come from a Link session of the caller's own
//     link token, checked before anything is exchanged (Issue 9.6);
//   - an intent is written before the exchange and the sealed token is
//     saved before any other call after it (Issue 9.7);
//   - Safeclose never removes at Plaid an item any user holds (Issue 9.5).
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
	case len(req.LinkToken) > 256:
		return badRequest("invalid_field", "link_token is too long")
	}
	ls, err := s.linkSessionOf(tn, id, req.PublicToken, req.LinkToken)
	if err != nil {
		return err
	}
	if !s.budget.allow(tn.Name, id.Subject, s.now()) { // before the intent: nothing to resolve
		return ErrPlaidBudget
	}
	intent, err := s.db.BeginExchange(store.Intent{
		Tenant: tn.Name, User: id.Subject, LinkTokenHash: store.LinkTokenHash(ls.LinkToken), CreatedAt: s.now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("%w: exchange intent: %w", ErrStoreDown, err)
	}
	pctx, cancel := s.plaidCtx()
	defer cancel()
	accessToken, itemID, err := tn.plaid.exchange(pctx, req.PublicToken)
	if err == nil {
		err = s.fault(faultExchanged)
	}
	if err != nil {
		var pe *PlaidError
		switch {
		case errors.As(err, &pe) && pe.HTTPStatus >= 400 && pe.HTTPStatus < 500:
			// Plaid refused: no item was handed out.
			s.resolve(tn, intent)
		case errors.As(err, &pe), errors.Is(err, ErrPlaidDown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			// The answer is lost, or unreadable (a 2xx whose body did
			// not parse, a redirect): Plaid may have made an item we
			// will never see the access token of.
			s.orphanIntent(intent, "", "the answer of /item/public_token/exchange was lost")
		}
		// Anything else stands for a crash: the intent stays, and the next
		// start reports it.
		return err
	}
	// From here on we hold a billable item. Save it before anything else.
	resp, err := s.keep(tn, id, intent, itemID, accessToken)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
	return nil
}

// linkSessionOf finds the caller's link session whose Link session made
// publicToken, asking Plaid's /link/token/get; it exchanges nothing.
func (s *Server) linkSessionOf(tn *tenant, id Identity, publicToken, linkToken string) (store.LinkSession, error) {
	var cands []store.LinkSession
	if linkToken != "" {
		ls, err := s.db.LinkSessionByToken(linkToken)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return ls, ErrLinkSession
		case err != nil:
			return ls, fmt.Errorf("%w: link session: %w", ErrStoreDown, err)
		case ls.Tenant != tn.Name || ls.User != id.Subject:
			s.log.Warn("exchange refused: link token belongs to another user", "tenant", tn.Name)
			return ls, ErrLinkSession
		}
		cands = []store.LinkSession{ls}
	} else {
		var err error
		if cands, err = s.db.LinkSessions(tn.Name, id.Subject, maxLinkSearch); err != nil {
			return store.LinkSession{}, fmt.Errorf("%w: link sessions: %w", ErrStoreDown, err)
		}
	}
	for _, ls := range cands {
		if !s.budget.allow(tn.Name, id.Subject, s.now()) {
			return ls, ErrPlaidBudget
		}
		ctx, cancel := s.plaidCtx()
		pts, err := tn.plaid.linkPublicTokens(ctx, ls.LinkToken)
		cancel()
		var pe *PlaidError
		if errors.As(err, &pe) && pe.HTTPStatus < 500 {
			continue // an expired or unknown link token made nothing we can use
		}
		if err != nil {
			return ls, err
		}
		if slices.Contains(pts, publicToken) {
			return ls, nil
		}
	}
	s.log.Warn("exchange refused: public token not from the caller's link sessions", "tenant", tn.Name, "searched", len(cands))
	return store.LinkSession{}, ErrLinkSession
}

// keep stores (or refuses) the item Plaid just handed us.
func (s *Server) keep(tn *tenant, id Identity, intent store.Intent, itemID, accessToken string) (*exchangeResponse, error) {
	resp := &exchangeResponse{ItemID: itemID}
	ot, ou, err := s.db.ItemOwner(itemID)
	switch {
	case err == nil && (ot != tn.Name || ou != id.Subject):
		// Someone else holds it: never remove it, never hand it over.
		s.resolve(tn, intent)
		s.log.Error("exchange yielded an item another user holds; refused, nothing removed", "tenant", tn.Name, "item_id", itemID)
		return nil, fmt.Errorf("%w: item held by another owner", ErrNotFound)
	case err == nil:
		return s.keepOwn(tn, id, intent, itemID, accessToken)
	case !errors.Is(err, store.ErrNotFound):
		// We cannot tell who holds it, so we must not remove it; the
		// intent stays and is reported as an orphan if nobody does.
		s.orphanIntent(intent, itemID, "item owner lookup failed after the exchange")
		return nil, fmt.Errorf("%w: %w", ErrStoreDown, err)
	}

	now := s.now().UTC()
	it := store.Item{Tenant: tn.Name, User: id.Subject, ItemID: itemID, State: store.StateOK, CreatedAt: now, UpdatedAt: now}
	err = s.saveItem(it, accessToken)
	if errors.Is(err, store.ErrDuplicate) {
		s.resolve(tn, intent)
		s.log.Error("exchange yielded an item another user holds; refused, nothing removed", "tenant", tn.Name, "item_id", itemID)
		return nil, fmt.Errorf("%w: item held by another owner", ErrNotFound)
	}
	if err != nil {
		reason, hint := persistHint(err)
		tn.m.m.persistFailed.WithLabelValues(tn.Name, reason).Inc()
		s.log.Error("access token not persisted; removing the item at Plaid",
			"tenant", tn.Name, "item_id", itemID, "reason", reason, "err", err)
		if s.removeAtPlaid(tn, accessToken, itemID, reason) {
			s.resolve(tn, intent)
		} else {
			s.orphanIntent(intent, itemID, "not persisted ("+reason+") and /item/remove failed")
		}
		resp.PersistHint = &hint
		return resp, nil
	}
	s.resolve(tn, intent)
	if err := s.fault(faultSaved); err != nil {
		return nil, err
	}
	resp.Persisted = true

	// Only now learn the institution.
	info, err := s.itemGet(tn, accessToken)
	if err != nil {
		s.log.Warn("item/get after exchange failed; stored without institution", "tenant", tn.Name, "item_id", itemID, "err", err)
		s.log.Info("item linked", "tenant", tn.Name, "item_id", itemID)
		return resp, nil
	}
	if info.InstitutionID != "" {
		inst := info.InstitutionID
		resp.InstitutionID = &inst
		if dup := s.sameInstitution(tn.Name, id.Subject, itemID, info.InstitutionID); dup != "" {
			// A different new item at an institution the user already has:
			// remove only the new one (nobody else can hold it: we just
			// made it ours).
			if s.removeAtPlaid(tn, accessToken, itemID, "duplicate institution") {
				if err := s.db.DeleteItem(tn.Name, itemID); err != nil {
					s.log.Error("removed duplicate item at Plaid but not from the store", "tenant", tn.Name, "item_id", itemID, "err", err)
				}
				return nil, &conflictError{
					code:   "duplicate_institution",
					msg:    "this user already has a linked item at this institution; use update mode on it instead",
					itemID: dup,
				}
			}
			s.log.Warn("duplicate institution kept: the new item could not be removed at Plaid", "tenant", tn.Name, "item_id", itemID)
		}
	}
	_, err = s.db.UpdateItem(tn.Name, itemID, func(x *store.Item) error {
		x.InstitutionID = info.InstitutionID
		if info.ErrorCode == "ITEM_LOGIN_REQUIRED" {
			x.State = store.StateLoginRequired
		}
		return nil
	})
	if err != nil {
		s.log.Warn("institution not recorded", "tenant", tn.Name, "item_id", itemID, "err", err)
	}
	s.log.Info("item linked", "tenant", tn.Name, "item_id", itemID, "institution_id", info.InstitutionID)
	return resp, nil
}

// keepOwn answers an exchange of an item the caller already holds (an
// update-mode public token): an idempotent success that removes nothing.
func (s *Server) keepOwn(tn *tenant, id Identity, intent store.Intent, itemID, accessToken string) (*exchangeResponse, error) {
	it, err := s.db.Item(tn.Name, itemID)
	if err != nil {
		s.orphanIntent(intent, itemID, "held item unreadable after the exchange")
		return nil, fmt.Errorf("%w: %w", ErrStoreDown, err)
	}
	resp := &exchangeResponse{ItemID: itemID, Persisted: true}
	if cur, err := s.db.AccessToken(tn.Name, id.Subject, itemID); err != nil || cur != accessToken {
		// Plaid keeps an item's access token across update mode; store a
		// new one if it ever differs (or the old one no longer opens). Only
		// the token: the item as stored at that moment keeps what a webhook
		// may have written since it was read above.
		err := storeWrite(func() error { return s.db.SetAccessToken(tn.Name, id.Subject, itemID, accessToken) })
		if err != nil {
			reason, hint := persistHint(err)
			tn.m.m.persistFailed.WithLabelValues(tn.Name, reason).Inc()
			s.log.Error("new access token of a held item not persisted; the item keeps its stored token",
				"tenant", tn.Name, "item_id", itemID, "reason", reason, "err", err)
			resp.Persisted, resp.PersistHint = false, &hint
		}
	}
	s.resolve(tn, intent)
	if it.State == store.StateLoginRequired {
		it = s.refreshLogin(tn, it)
	}
	if it.InstitutionID != "" {
		inst := it.InstitutionID
		resp.InstitutionID = &inst
	}
	s.log.Info("held item exchanged again (update mode)", "tenant", tn.Name, "item_id", itemID)
	return resp, nil
}

// sameInstitution returns another live item of the user at inst, or "".
func (s *Server) sameInstitution(tenant, user, itemID, inst string) string {
	items, err := s.db.Items(tenant, user)
	if err != nil {
		return ""
	}
	for _, it := range items {
		if it.ItemID != itemID && it.InstitutionID == inst && it.State != store.StateRevoked {
			return it.ItemID
		}
	}
	return ""
}

// saveItem retries a save that failed for a reason that may pass (a write
// conflict, a busy disk); a missing key or another owner does not pass.
func (s *Server) saveItem(it store.Item, accessToken string) error {
	return storeWrite(func() error { return s.db.SaveItem(it, accessToken) })
}

// storeWrite runs a write of an access token up to three times, while its
// error is one another attempt may not meet (a conflict, a busy disk).
func storeWrite(write func() error) error {
	var err error
	for range 3 {
		err = write()
		if err == nil || errors.Is(err, store.ErrNoKey) || errors.Is(err, store.ErrKeyMismatch) ||
			errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return err
}

// itemGet is /item/get, retried once when Plaid is unreachable (it is a read).
func (s *Server) itemGet(tn *tenant, accessToken string) (itemInfo, error) {
	var info itemInfo
	var err error
	for range 2 {
		ctx, cancel := s.plaidCtx()
		info, err = tn.plaid.itemGet(ctx, accessToken)
		cancel()
		if !errors.Is(err, ErrPlaidDown) {
			return info, err
		}
	}
	return info, err
}

// persistHint tells the admin what to do when a token could not be saved.
func persistHint(err error) (reason, hint string) {
	switch {
	case errors.Is(err, store.ErrNoKey):
		return "no_key", "no encryption key is configured: set the keyring named by `keys` in the config (e.g. SAFECLOSE_KEYS=id:base64-32-bytes; `safeclose keys gen` makes one) and restart; the user must link again"
	case errors.Is(err, store.ErrKeyMismatch):
		return "key_mismatch", "the configured encryption key does not match the stored data (wrong or rotated-out key): restore the previous key as a secondary in the keyring and restart; the user must link again"
	case errors.Is(err, store.ErrClosed):
		return "store_closed", "the store is closed (shutting down or failed): check the data directory and restart; the user must link again"
	}
	return "store_error", "the store refused the write (disk full, permissions or corruption?): check the logs and the data directory; the user must link again"
}

// removeAtPlaid removes an item we will not keep and nobody holds, so
// nothing billable is orphaned; /item/remove is retried while Plaid is
// unreachable. It reports whether the item is gone.
func (s *Server) removeAtPlaid(tn *tenant, accessToken, itemID, why string) bool {
	var err error
	for range 3 {
		ctx, cancel := s.plaidCtx()
		err = tn.plaid.itemRemove(ctx, accessToken)
		cancel()
		if !errors.Is(err, ErrPlaidDown) {
			break
		}
	}
	if err != nil {
		s.log.Error("could not remove unkept item at Plaid: remove it by hand", "tenant", tn.Name, "item_id", itemID, "why", why, "err", err)
		return false
	}
	s.log.Info("removed unkept item at Plaid", "tenant", tn.Name, "item_id", itemID, "why", why)
	return true
}
