package plaidsim

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

type handler func(s *Server, r req) (map[string]any, *apiError)

// route returns the handler for a Plaid endpoint, or nil.
func route(path string) handler {
	switch path {
	case "/link/token/create":
		return (*Server).linkTokenCreate
	case "/link/token/get":
		return (*Server).linkTokenGet
	case "/item/public_token/exchange":
		return (*Server).publicTokenExchange
	case "/item/get":
		return (*Server).itemGet
	case "/item/remove":
		return (*Server).itemRemove
	case "/item/webhook/update":
		return (*Server).itemWebhookUpdate
	case "/webhook_verification_key/get":
		return (*Server).webhookKeyGet
	case "/sandbox/public_token/create":
		return (*Server).sandboxPublicTokenCreate
	case "/sandbox/item/fire_webhook":
		return (*Server).sandboxFireWebhook
	case "/sandbox/item/reset_login":
		return (*Server).sandboxResetLogin
	case "/transactions/sync":
		return (*Server).transactionsSync
	}
	return nil
}

var (
	languages = []string{"da", "nl", "en", "et", "fr", "de", "hi", "it", "lv", "lt", "no", "pl", "pt", "ro", "es", "sv", "vi", "ja"}
	countries = []string{"US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL", "DK", "NO", "SE", "EE", "LT", "LV", "PT", "BE", "AT", "FI"}
	products  = []string{"assets", "auth", "employment", "identity", "income_verification", "identity_verification", "investments", "liabilities", "payment_initiation", "standing_orders", "transactions", "transfer", "signal", "statements", "processor_payments", "recurring_transactions", "transactions_refresh", "beacon", "cra_base_report", "cra_income_insights", "credit_details", "layer", "investments_auth", "protect_linked_bank"}
	insRE     = regexp.MustCompile(`^ins_[0-9]+$`)
)

const (
	linkTTL       = 4 * time.Hour
	updateLinkTTL = 30 * time.Minute
	publicTTL     = 30 * time.Minute
	sessionTTL    = 6 * time.Hour // link session data after the session ends
)

func (s *Server) now() time.Time { return s.o.Now() }

func (s *Server) linkTokenCreate(r req) (map[string]any, *apiError) {
	var missing []string
	name, lang := r.str("client_name"), r.str("language")
	cc, ccOK := r.strs("country_codes")
	user := r.obj("user")
	if name == "" {
		missing = append(missing, "client_name")
	}
	if lang == "" {
		missing = append(missing, "language")
	}
	if !ccOK {
		missing = append(missing, "country_codes")
	}
	if user == nil {
		missing = append(missing, "user")
	}
	if len(missing) > 0 {
		return nil, missingFields(strings.Join(missing, ", "))
	}
	if user.str("client_user_id") == "" {
		return nil, invalidField("user.client_user_id must be a non-empty string")
	}
	if !slices.Contains(languages, lang) {
		return nil, invalidField("language must be one of " + strings.Join(languages, ", "))
	}
	if len(cc) == 0 {
		return nil, invalidField("country_codes must contain at least one country code")
	}
	for _, c := range cc {
		if !slices.Contains(countries, c) {
			return nil, perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_COUNTRY_CODE", "invalid country code: "+c)
		}
	}
	ps, _ := r.strs("products")
	at := r.str("access_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	if at != "" {
		if _, ok := s.st.ByToken[at]; !ok {
			return nil, errAccessToken()
		}
		if len(ps) > 0 {
			return nil, invalidField("products must be omitted in update mode")
		}
	} else {
		if len(ps) == 0 {
			return nil, invalidField("must provide at least one product")
		}
		for _, p := range ps {
			if !slices.Contains(products, p) {
				return nil, perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_PRODUCT", "invalid product: "+p)
			}
		}
	}
	now := s.now()
	lt := &linkToken{
		Token: "link-" + s.o.Environment + "-" + s.uuid(), CreatedAt: now, Expiration: now.Add(linkTTL),
		ClientName: name, Language: lang, CountryCodes: cc, Products: ps, Webhook: r.str("webhook"),
		RedirectURI: r.str("redirect_uri"), UserID: user.str("client_user_id"), AccessToken: at,
	}
	if at != "" {
		lt.Expiration = now.Add(updateLinkTTL)
	}
	s.st.LinkTokens[lt.Token] = lt
	_ = s.saveLocked()
	return map[string]any{"link_token": lt.Token, "expiration": rfc3339(lt.Expiration)}, nil
}

func (s *Server) linkTokenGet(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lt := s.st.LinkTokens[r.str("link_token")]
	if lt == nil {
		return nil, errLinkToken()
	}
	var webhook, redirect any
	if lt.Webhook != "" {
		webhook = lt.Webhook
	}
	if lt.RedirectURI != "" {
		redirect = lt.RedirectURI
	}
	ps := lt.Products
	if ps == nil {
		ps = []string{}
	}
	// Plaid reports session data for up to six hours after a session ends.
	sessions := []any{}
	for _, ls := range lt.Sessions {
		if s.now().Sub(ls.FinishedAt) > sessionTTL {
			continue
		}
		sessions = append(sessions, map[string]any{
			"link_session_id": ls.ID, "started_at": rfc3339(ls.StartedAt), "finished_at": rfc3339(ls.FinishedAt),
			"results": map[string]any{
				"item_add_results": []any{map[string]any{
					"public_token": ls.PublicToken, "accounts": []any{},
					"institution": map[string]any{"institution_id": ls.InstitutionID, "name": "Sandbox " + ls.InstitutionID},
				}},
				"cra_item_add_results": []any{}, "cra_update_results": []any{}, "bank_income_results": []any{},
				"payroll_income_results": []any{}, "document_income_results": nil,
			},
		})
	}
	return map[string]any{
		"link_token": lt.Token, "created_at": rfc3339(lt.CreatedAt), "expiration": rfc3339(lt.Expiration),
		"link_sessions": sessions,
		"metadata": map[string]any{
			"initial_products": ps, "webhook": webhook, "country_codes": lt.CountryCodes,
			"language": lt.Language, "redirect_uri": redirect, "client_name": lt.ClientName,
		},
	}, nil
}

func (s *Server) publicTokenExchange(r req) (map[string]any, *apiError) {
	pt := r.str("public_token")
	if pt == "" {
		return nil, missingFields("public_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.st.PublicTokens[pt]
	if p == nil || p.Used || s.now().Sub(p.CreatedAt) > publicTTL {
		return nil, errPublicToken()
	}
	p.Used = true
	it := s.st.Items[p.ItemID]
	_ = s.saveLocked()
	return map[string]any{"access_token": it.AccessToken, "item_id": it.ItemID}, nil
}

// lookup finds the live item for an access token; s.mu must be held.
func (s *Server) lookup(r req) (*item, *apiError) {
	at := r.str("access_token")
	if at == "" {
		return nil, missingFields("access_token")
	}
	it := s.st.Items[s.st.ByToken[at]]
	if it == nil {
		return nil, errAccessToken()
	}
	return it, nil
}

func (s *Server) itemJSON(it *item) map[string]any {
	var errObj, webhook any
	if it.LoginRequired {
		e := errLoginRequired()
		errObj = map[string]any{"error_type": e.Type, "error_code": e.Code, "error_message": e.Message, "display_message": nil}
	}
	if it.Webhook != "" {
		webhook = it.Webhook
	}
	return map[string]any{
		"item_id": it.ItemID, "institution_id": it.InstitutionID, "webhook": webhook, "error": errObj,
		"available_products": []string{"balance", "identity"}, "billed_products": it.Products,
		"products": it.Products, "consented_products": it.Products, "consent_expiration_time": nil,
		"update_type": "background", "created_at": rfc3339(it.CreatedAt),
	}
}

func (s *Server) itemGet(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, e := s.lookup(r)
	if e != nil {
		return nil, e
	}
	status := map[string]any{}
	if it.LastWebhook != "" {
		status["last_webhook"] = map[string]any{"sent_at": rfc3339(it.LastWebhookAt), "code_sent": it.LastWebhook}
	}
	return map[string]any{"item": s.itemJSON(it), "status": status}, nil
}

func (s *Server) itemRemove(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, e := s.lookup(r)
	if e != nil {
		return nil, e
	}
	delete(s.st.ByToken, it.AccessToken)
	delete(s.st.Items, it.ItemID)
	_ = s.saveLocked()
	return map[string]any{}, nil
}

func (s *Server) itemWebhookUpdate(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	it, e := s.lookup(r)
	if e != nil {
		s.mu.Unlock()
		return nil, e
	}
	it.Webhook = r.str("webhook")
	item := s.itemJSON(it)
	delete(item, "created_at") // Plaid's Item here (unlike /item/get's) has no created_at
	out := map[string]any{"item": item}
	id, url := it.ItemID, it.Webhook
	_ = s.saveLocked()
	s.mu.Unlock()
	if url != "" {
		s.fire(id, map[string]any{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED",
			"item_id": id, "new_webhook_url": url, "error": nil, "environment": s.o.Environment})
	}
	return out, nil
}

func (s *Server) webhookKeyGet(r req) (map[string]any, *apiError) {
	kid := r.str("key_id")
	if kid == "" {
		return nil, missingFields("key_id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.Kid == kid {
			return map[string]any{"key": jwk(k)}, nil
		}
	}
	return nil, errKeyID()
}

// newItem creates an item and a public token for it; s.mu must be held.
func (s *Server) newItem(inst string, ps []string, webhook string) string {
	now := s.now()
	it := &item{
		ItemID: s.randStr(37), AccessToken: "access-" + s.o.Environment + "-" + s.uuid(),
		InstitutionID: inst, Webhook: webhook, Products: ps, CreatedAt: now,
	}
	s.st.Items[it.ItemID] = it
	s.st.ByToken[it.AccessToken] = it.ItemID
	pt := &publicToken{Token: "public-" + s.o.Environment + "-" + s.uuid(), ItemID: it.ItemID, CreatedAt: now}
	s.st.PublicTokens[pt.Token] = pt
	_ = s.saveLocked()
	return pt.Token
}

func (s *Server) sandboxPublicTokenCreate(r req) (map[string]any, *apiError) {
	inst := r.str("institution_id")
	ps, ok := r.strs("initial_products")
	var missing []string
	if inst == "" {
		missing = append(missing, "institution_id")
	}
	if !ok {
		missing = append(missing, "initial_products")
	}
	if len(missing) > 0 {
		return nil, missingFields(strings.Join(missing, ", "))
	}
	if !insRE.MatchString(inst) {
		return nil, errInstitution()
	}
	if len(ps) == 0 {
		return nil, invalidField("initial_products must not be empty")
	}
	for _, p := range ps {
		if !slices.Contains(products, p) {
			return nil, perr(http.StatusBadRequest, "INVALID_INPUT", "INVALID_PRODUCT", "invalid product: "+p)
		}
	}
	opts := r.obj("options")
	if u := opts.str("override_username"); u != "" && u != "user_good" {
		return nil, perr(http.StatusBadRequest, "ITEM_ERROR", "INVALID_CREDENTIALS", "the provided credentials were not correct")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"public_token": s.newItem(inst, ps, opts.str("webhook"))}, nil
}

var fireable = map[string]string{ // code → type
	"DEFAULT_UPDATE": "TRANSACTIONS", "SYNC_UPDATES_AVAILABLE": "TRANSACTIONS", "NEW_ACCOUNTS_AVAILABLE": "ITEM",
	"PENDING_EXPIRATION": "ITEM", "PENDING_DISCONNECT": "ITEM", "USER_PERMISSION_REVOKED": "ITEM", "LOGIN_REPAIRED": "ITEM",
}

func (s *Server) sandboxFireWebhook(r req) (map[string]any, *apiError) {
	code := r.str("webhook_code")
	if code == "" {
		return nil, missingFields("webhook_code")
	}
	typ, ok := fireable[code]
	if !ok {
		return nil, invalidField("webhook_code " + code + " cannot be fired by this sandbox")
	}
	if t := r.str("webhook_type"); t != "" && t != typ {
		return nil, invalidField("webhook_code " + code + " belongs to webhook_type " + typ)
	}
	s.mu.Lock()
	it, e := s.lookup(r)
	if e != nil {
		s.mu.Unlock()
		return nil, e
	}
	if it.Webhook == "" {
		s.mu.Unlock()
		return nil, errWebhookInvalid()
	}
	if typ == "TRANSACTIONS" && !slices.Contains(it.Products, "transactions") {
		s.mu.Unlock()
		return nil, errProductNotEnabled()
	}
	now := s.now()
	body := map[string]any{"webhook_type": typ, "webhook_code": code, "item_id": it.ItemID, "environment": s.o.Environment}
	switch code {
	case "SYNC_UPDATES_AVAILABLE":
		body["initial_update_complete"], body["historical_update_complete"] = true, true
	case "DEFAULT_UPDATE":
		body["new_transactions"], body["error"] = 3, nil
	case "PENDING_EXPIRATION":
		body["consent_expiration_time"] = rfc3339(now.Add(7 * 24 * time.Hour))
	case "PENDING_DISCONNECT":
		body["reason"], body["disconnect_time"] = "INSTITUTION_MIGRATION", rfc3339(now.Add(7*24*time.Hour))
	case "USER_PERMISSION_REVOKED":
		body["error"] = map[string]any{"error_type": "ITEM_ERROR", "error_code": "USER_PERMISSION_REVOKED",
			"error_message":   "the holder of this account has revoked their permission for your application to access it",
			"display_message": nil, "status": 400}
	case "LOGIN_REPAIRED":
		it.LoginRequired = false
		_ = s.saveLocked()
	}
	id := it.ItemID
	s.mu.Unlock()
	s.fire(id, body)
	return map[string]any{"webhook_fired": true}, nil
}

func (s *Server) sandboxResetLogin(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	it, e := s.lookup(r)
	if e != nil {
		s.mu.Unlock()
		return nil, e
	}
	it.LoginRequired = true
	id, hook := it.ItemID, it.Webhook
	_ = s.saveLocked()
	s.mu.Unlock()
	if hook != "" {
		le := errLoginRequired()
		s.fire(id, map[string]any{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": id, "environment": s.o.Environment,
			"error": map[string]any{"error_type": le.Type, "error_code": le.Code, "error_message": le.Message,
				"display_message": nil, "status": 400}})
	}
	return map[string]any{"reset_login": true}, nil
}

func (s *Server) transactionsSync(r req) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, e := s.lookup(r)
	if e != nil {
		return nil, e
	}
	if it.LoginRequired {
		return nil, errLoginRequired()
	}
	it.Synced = true
	return map[string]any{
		"accounts": []any{}, "added": []any{}, "modified": []any{}, "removed": []any{},
		"next_cursor": "cursor-" + it.ItemID, "has_more": false, "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
	}, nil
}
