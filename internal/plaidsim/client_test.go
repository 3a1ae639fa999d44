package plaidsim

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"

	"github.com/safeclose/safeclose/internal/jwkp256"
)

// These tests drive every Plaid endpoint of the emulator with the real
// plaid-go v29 client (and net/http where plaid-go cannot express the
// request) and check the decoded values. newEnv's cleanup additionally checks
// that every response carried Content-Type application/json and a request_id.

func TestLinkTokenCreateAndGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		update     bool // update mode: access_token, no products
		webhook    string
		redirect   string
		ttl        time.Duration
		wantProdts []plaid.Products
	}{
		{name: "new item", webhook: "https://example.com/hook", redirect: "https://app.example.com/oauth", ttl: 4 * time.Hour, wantProdts: transactions()},
		{name: "new item without webhook", ttl: 4 * time.Hour, wantProdts: transactions()},
		{name: "update mode", update: true, ttl: 30 * time.Minute, wantProdts: []plaid.Products{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			req := linkReq("user-1")
			if tt.update {
				at, _ := e.linkItem(t, "")
				req.SetAccessToken(at)
			} else {
				req.SetProducts(tt.wantProdts)
			}
			if tt.webhook != "" {
				req.SetWebhook(tt.webhook)
			}
			if tt.redirect != "" {
				req.SetRedirectUri(tt.redirect)
			}
			created := e.clk.Now()
			res, hr, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
			if err != nil {
				t.Fatalf("link/token/create: %v", err)
			}
			if hr.StatusCode != 200 || !linkTokenRE.MatchString(res.GetLinkToken()) || !requestIDRE.MatchString(res.GetRequestId()) {
				t.Errorf("link/token/create = %d %+v", hr.StatusCode, res)
			}
			if got, want := res.GetExpiration(), created.Add(tt.ttl); !got.Equal(want) {
				t.Errorf("expiration = %v, want %v", got, want)
			}
			e.clk.Add(time.Minute) // link/token/get must report the creation time, not now
			g, _, err := e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(res.GetLinkToken())).Execute()
			if err != nil {
				t.Fatalf("link/token/get: %v", err)
			}
			md := g.Metadata
			if g.GetLinkToken() != res.GetLinkToken() || !g.GetCreatedAt().Equal(created) || !g.GetExpiration().Equal(created.Add(tt.ttl)) {
				t.Errorf("link/token/get token/times = %q %v %v", g.GetLinkToken(), g.GetCreatedAt(), g.GetExpiration())
			}
			if md.GetClientName() != "Safeclose" || md.GetLanguage() != "en" || !slices.Equal(md.GetCountryCodes(), []plaid.CountryCode{plaid.COUNTRYCODE_US}) {
				t.Errorf("metadata = name %q lang %q countries %v", md.GetClientName(), md.GetLanguage(), md.GetCountryCodes())
			}
			if !slices.Equal(md.GetInitialProducts(), tt.wantProdts) {
				t.Errorf("metadata.initial_products = %v, want %v", md.GetInitialProducts(), tt.wantProdts)
			}
			if md.GetWebhook() != tt.webhook || md.Webhook.IsSet() != (tt.webhook != "") {
				t.Errorf("metadata.webhook = %q (set %v), want %q", md.GetWebhook(), md.Webhook.IsSet(), tt.webhook)
			}
			if md.GetRedirectUri() != tt.redirect {
				t.Errorf("metadata.redirect_uri = %q, want %q", md.GetRedirectUri(), tt.redirect)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		_, hr, err := e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest("link-sandbox-00000000-0000-4000-8000-000000000000")).Execute()
		wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_LINK_TOKEN")
		up := linkReq("u")
		up.SetAccessToken("access-sandbox-00000000-0000-4000-8000-000000000000")
		_, hr, err = e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
		wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")
	})
}

// Missing or empty required fields of /link/token/create give Plaid's
// INVALID_REQUEST errors with HTTP 400, through plaid-go (which always sends
// its required fields, possibly empty) and raw (fields absent).
func TestLinkTokenCreateRequiredFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	tests := []struct {
		name      string
		mutate    func(*plaid.LinkTokenCreateRequest)
		typ, code string
		mention   string // the error message names the field
	}{
		{"empty client_name", func(r *plaid.LinkTokenCreateRequest) { r.ClientName = "" }, "INVALID_REQUEST", "MISSING_FIELDS", "client_name"},
		{"empty language", func(r *plaid.LinkTokenCreateRequest) { r.Language = "" }, "INVALID_REQUEST", "MISSING_FIELDS", "language"},
		{"null country_codes", func(r *plaid.LinkTokenCreateRequest) { r.CountryCodes = nil }, "INVALID_REQUEST", "MISSING_FIELDS", "country_codes"},
		{"empty country_codes", func(r *plaid.LinkTokenCreateRequest) { r.CountryCodes = []plaid.CountryCode{} }, "INVALID_REQUEST", "INVALID_FIELD", "country_codes"},
		{"empty user.client_user_id", func(r *plaid.LinkTokenCreateRequest) { r.User.ClientUserId = "" }, "INVALID_REQUEST", "INVALID_FIELD", "client_user_id"},
		{"no products", func(r *plaid.LinkTokenCreateRequest) { r.Products = nil }, "INVALID_REQUEST", "INVALID_FIELD", "product"},
		{"unknown language", func(r *plaid.LinkTokenCreateRequest) { r.Language = "xx" }, "INVALID_REQUEST", "INVALID_FIELD", "language"},
		{"balance is not a product", func(r *plaid.LinkTokenCreateRequest) { r.Products = []plaid.Products{plaid.PRODUCTS_BALANCE} }, "INVALID_INPUT", "INVALID_PRODUCT", "balance"},
	}
	for _, tt := range tests {
		t.Run("plaid-go/"+tt.name, func(t *testing.T) {
			t.Parallel()
			req := linkReq("u")
			req.SetProducts(transactions())
			tt.mutate(req)
			_, hr, err := e.api.LinkTokenCreate(context.Background()).LinkTokenCreateRequest(*req).Execute()
			pe := wantPlaidErr(t, err, hr, 400, tt.typ, tt.code)
			if !strings.Contains(pe.ErrorMessage, tt.mention) {
				t.Errorf("error_message %q does not mention %q", pe.ErrorMessage, tt.mention)
			}
		})
	}

	full := map[string]string{
		"client_name": `"Safeclose"`, "language": `"en"`, "country_codes": `["US"]`,
		"user": `{"client_user_id":"u"}`, "products": `["transactions"]`,
	}
	body := func(drop ...string) string {
		var parts []string
		for _, k := range []string{"client_name", "language", "country_codes", "user", "products"} {
			if !slices.Contains(drop, k) {
				parts = append(parts, `"`+k+`":`+full[k])
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	raw := []struct {
		name string
		drop []string
	}{
		{"client_name", []string{"client_name"}},
		{"language", []string{"language"}},
		{"country_codes", []string{"country_codes"}},
		{"user", []string{"user"}},
		{"all four", []string{"client_name", "language", "country_codes", "user"}},
	}
	for _, tt := range raw {
		t.Run("raw/missing "+tt.name, func(t *testing.T) {
			t.Parallel()
			st, _, b := rawPost(t, e.ts.URL+"/link/token/create", body(tt.drop...), credHeaders)
			m := jsonObj(t, b)
			if st != 400 || m["error_type"] != "INVALID_REQUEST" || m["error_code"] != "MISSING_FIELDS" {
				t.Fatalf("= %d %s", st, b)
			}
			msg, _ := m["error_message"].(string)
			for _, f := range tt.drop {
				if !strings.Contains(msg, f) {
					t.Errorf("error_message %q does not name %s", msg, f)
				}
			}
		})
	}
	t.Run("raw/products absent", func(t *testing.T) {
		t.Parallel()
		st, _, b := rawPost(t, e.ts.URL+"/link/token/create", body("products"), credHeaders)
		m := jsonObj(t, b)
		// Plaid: 400 INVALID_REQUEST/INVALID_FIELD "must provide at least one product" (plaid-node#563).
		if st != 400 || m["error_type"] != "INVALID_REQUEST" || m["error_code"] != "INVALID_FIELD" || m["error_message"] != "must provide at least one product" {
			t.Errorf("= %d %s", st, b)
		}
	})
	t.Run("raw/complete body succeeds", func(t *testing.T) {
		t.Parallel()
		st, _, b := rawPost(t, e.ts.URL+"/link/token/create", body(), credHeaders)
		if lt, _ := jsonObj(t, b)["link_token"].(string); st != 200 || !linkTokenRE.MatchString(lt) {
			t.Errorf("= %d %s", st, b)
		}
	})
}

func TestSandboxPublicTokenCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	bad := "user_bad"
	tests := []struct {
		name      string
		inst      string
		products  []plaid.Products
		username  *string
		typ, code string // "" = success
	}{
		{name: "ok", inst: testInst, products: transactions()},
		{name: "two products", inst: "ins_3", products: []plaid.Products{plaid.PRODUCTS_AUTH, plaid.PRODUCTS_TRANSACTIONS}},
		{name: "unknown institution", inst: "chase", products: transactions(), typ: "INVALID_INPUT", code: "INVALID_INSTITUTION"},
		{name: "no products", inst: testInst, products: []plaid.Products{}, typ: "INVALID_REQUEST", code: "INVALID_FIELD"},
		{name: "balance", inst: testInst, products: []plaid.Products{plaid.PRODUCTS_BALANCE}, typ: "INVALID_INPUT", code: "INVALID_PRODUCT"},
		{name: "bad credentials", inst: testInst, products: transactions(), username: &bad, typ: "ITEM_ERROR", code: "INVALID_CREDENTIALS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := plaid.NewSandboxPublicTokenCreateRequest(tt.inst, tt.products)
			if tt.username != nil {
				o := plaid.SandboxPublicTokenCreateRequestOptions{}
				o.SetOverrideUsername(*tt.username)
				req.SetOptions(o)
			}
			res, hr, err := e.api.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(*req).Execute()
			if tt.code != "" {
				wantPlaidErr(t, err, hr, 400, tt.typ, tt.code)
				return
			}
			if err != nil || !publicTokenRE.MatchString(res.GetPublicToken()) || !requestIDRE.MatchString(res.GetRequestId()) {
				t.Fatalf("= %+v %v", res, err)
			}
			ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(res.GetPublicToken())).Execute()
			if err != nil {
				t.Fatal(err)
			}
			g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(ex.GetAccessToken())).Execute()
			if err != nil || g.Item.GetInstitutionId() != tt.inst || !slices.Equal(g.Item.GetProducts(), tt.products) {
				t.Errorf("item = inst %q products %v (%v); want %q %v", g.Item.GetInstitutionId(), g.Item.GetProducts(), err, tt.inst, tt.products)
			}
		})
	}
}

func TestPublicTokenExchange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exchange := func(e *env, pt string) (plaid.ItemPublicTokenExchangeResponse, *http.Response, error) {
		return e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
	}
	t.Run("values and single use", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		pt, err := e.newPublicToken(ctx, "", transactions())
		if err != nil {
			t.Fatal(err)
		}
		r, hr, err := exchange(e, pt)
		if err != nil || hr.StatusCode != 200 {
			t.Fatalf("exchange: %v", err)
		}
		if !accessTokenRE.MatchString(r.GetAccessToken()) || !itemIDRE.MatchString(r.GetItemId()) || !requestIDRE.MatchString(r.GetRequestId()) {
			t.Errorf("exchange = %+v", r)
		}
		if len(r.AdditionalProperties) != 0 {
			t.Errorf("exchange has fields beyond access_token/item_id/request_id: %v", r.AdditionalProperties)
		}
		_, hr, err = exchange(e, pt)
		pe := wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")
		if pe.ErrorMessage != "could not find matching public token" {
			t.Errorf("error_message = %q", pe.ErrorMessage)
		}
	})
	t.Run("expires after 30 minutes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		young, err := e.newPublicToken(ctx, "", transactions())
		if err != nil {
			t.Fatal(err)
		}
		old, err := e.newPublicToken(ctx, "", transactions())
		if err != nil {
			t.Fatal(err)
		}
		e.clk.Add(30*time.Minute - time.Second)
		if _, _, err := exchange(e, young); err != nil {
			t.Errorf("exchange at 29m59s: %v", err)
		}
		e.clk.Add(2 * time.Second)
		_, hr, err := exchange(e, old)
		wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")
	})
	t.Run("unknown and empty", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		_, hr, err := exchange(e, "public-sandbox-00000000-0000-4000-8000-000000000000")
		wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")
		_, hr, err = exchange(e, "")
		wantPlaidErr(t, err, hr, 400, "INVALID_REQUEST", "MISSING_FIELDS")
	})
}

// /item/get, /sandbox/item/reset_login, the ITEM/ERROR webhook, data
// endpoints refusing the item, and repair through update-mode Link.
func TestItemGetResetLoginAndUpdateMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	created := e.clk.Now()
	at, itemID := e.linkItem(t, rcv.url)
	get := func() plaid.ItemGetResponse {
		t.Helper()
		g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
		if err != nil {
			t.Fatalf("item/get: %v", err)
		}
		return g
	}
	sync := func() (plaid.TransactionsSyncResponse, *http.Response, error) {
		return e.api.TransactionsSync(ctx).TransactionsSyncRequest(*plaid.NewTransactionsSyncRequest(at)).Execute()
	}

	g := get()
	it := g.Item
	if it.GetItemId() != itemID || it.GetInstitutionId() != testInst || it.GetWebhook() != rcv.url || it.Error.Get() != nil ||
		!slices.Equal(it.GetProducts(), transactions()) || !slices.Equal(it.GetBilledProducts(), transactions()) ||
		it.GetUpdateType() != "background" || it.CreatedAt == nil || !it.CreatedAt.Equal(created) || it.ConsentExpirationTime.Get() != nil {
		t.Fatalf("item/get = %+v", it)
	}
	if g.Status.Get() == nil || g.Status.Get().LastWebhook.Get() != nil {
		t.Errorf("status before any webhook = %+v", g.Status.Get())
	}

	e.clk.Add(time.Hour)
	rl, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute()
	if err != nil || !rl.GetResetLogin() || !requestIDRE.MatchString(rl.GetRequestId()) {
		t.Fatalf("reset_login = %+v %v", rl, err)
	}
	wh := rcv.waitCode(t, "ERROR")
	// status.last_webhook is set once the emulator has the receiver's 200.
	waitDeliveries(t, e.sim, "the logged ERROR delivery", func(ds []Delivery) bool { return len(ds) == 1 && ds[0].Status == 200 })
	m := jsonObj(t, wh.Body)
	werr, _ := m["error"].(map[string]any)
	if m["webhook_type"] != "ITEM" || m["item_id"] != itemID || m["environment"] != "sandbox" || werr["error_code"] != "ITEM_LOGIN_REQUIRED" || werr["error_type"] != "ITEM_ERROR" || werr["status"] != 400.0 {
		t.Errorf("ITEM/ERROR webhook = %s", wh.Body)
	}
	if _, ok := werr["request_id"]; ok {
		t.Errorf("webhook error carries request_id (Plaid omits it in webhooks): %s", wh.Body)
	}

	g = get()
	ie := g.Item.Error.Get()
	if ie == nil || ie.ErrorType != plaid.PLAIDERRORTYPE_ITEM_ERROR || ie.ErrorCode != "ITEM_LOGIN_REQUIRED" || !strings.Contains(ie.ErrorMessage, "update mode") {
		t.Fatalf("item.error after reset_login = %+v", ie)
	}
	lw := g.Status.Get().LastWebhook.Get()
	if lw == nil || lw.GetCodeSent() != "ERROR" || !lw.GetSentAt().Equal(created.Add(time.Hour)) {
		t.Errorf("status.last_webhook = %+v", lw)
	}
	_, hr, err := sync()
	wantPlaidErr(t, err, hr, 400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED")

	// Update mode: a link token for the access token; completing Link
	// clears the error; the access token stays the same.
	up := linkReq("u")
	up.SetAccessToken(at)
	lt, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	if err != nil {
		t.Fatal(err)
	}
	pt, err := e.sim.CompleteLink(lt.GetLinkToken(), testInst, "user_good")
	if err != nil || !publicTokenRE.MatchString(pt) {
		t.Fatalf("CompleteLink(update mode) = %q %v", pt, err)
	}
	g = get()
	if g.Item.Error.Get() != nil || g.Item.GetItemId() != itemID {
		t.Fatalf("item after update mode = %+v", g.Item)
	}
	s, _, err := sync()
	if err != nil || s.GetHasMore() || s.GetNextCursor() == "" || len(s.GetAdded()) != 0 || s.GetTransactionsUpdateStatus() != plaid.TRANSACTIONSUPDATESTATUS_HISTORICAL_UPDATE_COMPLETE {
		t.Errorf("transactions/sync after repair = %+v %v", s, err)
	}
	// The repair came from the app's own update mode: no LOGIN_REPAIRED.
	for _, h := range rcv.all() {
		if h.Code == "LOGIN_REPAIRED" {
			t.Errorf("update mode fired LOGIN_REPAIRED: %s", h.Body)
		}
	}
}

func TestItemRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	at, _ := e.linkItem(t, newReceiver(t, nil).url)
	other, otherID := e.linkItem(t, "")
	rm, hr, err := e.api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute()
	if err != nil || hr.StatusCode != 200 || !requestIDRE.MatchString(rm.GetRequestId()) {
		t.Fatalf("item/remove = %+v %v", rm, err)
	}
	check := func(name string, hr *http.Response, err error) {
		t.Helper()
		pe := wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")
		if pe.ErrorMessage != "could not find matching access token" {
			t.Errorf("%s: error_message = %q", name, pe.ErrorMessage)
		}
	}
	_, hr, err = e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	check("item/get", hr, err)
	_, hr, err = e.api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute()
	check("item/remove again", hr, err)
	_, hr, err = e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "DEFAULT_UPDATE")).Execute()
	check("fire_webhook", hr, err)
	_, hr, err = e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute()
	check("reset_login", hr, err)
	up := linkReq("u")
	up.SetAccessToken(at)
	_, hr, err = e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	check("update-mode link token", hr, err)
	// Other items are untouched.
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(other)).Execute()
	if err != nil || g.Item.GetItemId() != otherID {
		t.Errorf("other item after remove = %v %v", g.Item.GetItemId(), err)
	}
}

// /item/webhook/update answers with the item and sends
// WEBHOOK_UPDATE_ACKNOWLEDGED to the new URL only.
func TestItemWebhookUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	oldRcv, newRcv := newReceiver(t, nil), newReceiver(t, nil)
	at, itemID := e.linkItem(t, oldRcv.url)
	req := plaid.NewItemWebhookUpdateRequest(at)
	req.SetWebhook(newRcv.url)
	res, _, err := e.api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*req).Execute()
	if err != nil || res.Item.GetItemId() != itemID || res.Item.GetWebhook() != newRcv.url || res.Item.GetInstitutionId() != testInst || !requestIDRE.MatchString(res.GetRequestId()) {
		t.Fatalf("item/webhook/update = %+v %v", res, err)
	}
	h := newRcv.waitCode(t, "WEBHOOK_UPDATE_ACKNOWLEDGED")
	m := jsonObj(t, h.Body)
	if m["webhook_type"] != "ITEM" || m["item_id"] != itemID || m["new_webhook_url"] != newRcv.url || m["environment"] != "sandbox" {
		t.Errorf("ack = %s", h.Body)
	}
	if v, ok := m["error"]; !ok || v != nil {
		t.Errorf("ack error = %v (present %v), want null", v, ok)
	}
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	if err != nil || g.Item.GetWebhook() != newRcv.url {
		t.Errorf("item/get webhook = %q %v", g.Item.GetWebhook(), err)
	}
	if err := e.sim.Close(); err != nil { // waits for all deliveries
		t.Fatal(err)
	}
	for _, d := range e.sim.Deliveries() {
		if d.URL != newRcv.url {
			t.Errorf("delivery to %s, want only the new URL", d.URL)
		}
	}
	if n := len(oldRcv.all()); n != 0 {
		t.Errorf("old URL got %d webhooks", n)
	}
}

func TestWebhookVerificationKeyGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	kid := e.currentKid(t)
	k, hr, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
	if err != nil || hr.StatusCode != 200 || !requestIDRE.MatchString(k.GetRequestId()) {
		t.Fatalf("webhook_verification_key/get: %v", err)
	}
	key := k.Key
	if key.Kid != kid || !kidRE.MatchString(kid) || key.Alg != "ES256" || key.Crv != "P-256" || key.Kty != "EC" || key.Use != "sig" {
		t.Errorf("key = %+v", key)
	}
	if int64(key.CreatedAt) != clockStart.Unix() || key.ExpiredAt.Get() != nil {
		t.Errorf("created_at %d expired_at %v; want %d and null", key.CreatedAt, key.ExpiredAt.Get(), clockStart.Unix())
	}
	x, errX := base64.RawURLEncoding.DecodeString(key.X)
	y, errY := base64.RawURLEncoding.DecodeString(key.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		t.Fatalf("x/y are not 32-byte base64url: %q %q", key.X, key.Y)
	}
	if _, err := jwkp256.PublicKey(key.Crv, key.X, key.Y); err != nil {
		t.Errorf("x/y are not a P-256 point: %v", err)
	}

	_, hr, err = e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest("6c5516e1-92dc-479e-a8ff-5a51992e0001")).Execute()
	pe := wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID")
	if !strings.HasPrefix(pe.ErrorMessage, "invalid key_id provided. note that key_ids are specific to Plaid environments") {
		t.Errorf("error_message = %q", pe.ErrorMessage)
	}
	_, hr, err = e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest("")).Execute()
	wantPlaidErr(t, err, hr, 400, "INVALID_REQUEST", "MISSING_FIELDS")
}

func TestSandboxItemFireWebhook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		code, typ string
		setType   bool // send webhook_type explicitly
		check     func(t *testing.T, m map[string]any)
	}{
		{code: "SYNC_UPDATES_AVAILABLE", typ: "TRANSACTIONS", setType: true, check: func(t *testing.T, m map[string]any) {
			if m["initial_update_complete"] != true || m["historical_update_complete"] != true {
				t.Errorf("completion flags = %v %v", m["initial_update_complete"], m["historical_update_complete"])
			}
		}},
		{code: "DEFAULT_UPDATE", typ: "TRANSACTIONS", check: func(t *testing.T, m map[string]any) {
			if n, ok := m["new_transactions"].(float64); !ok || n < 0 {
				t.Errorf("new_transactions = %v", m["new_transactions"])
			}
		}},
		{code: "NEW_ACCOUNTS_AVAILABLE", typ: "ITEM", setType: true},
		{code: "PENDING_EXPIRATION", typ: "ITEM", check: func(t *testing.T, m map[string]any) {
			if m["consent_expiration_time"] != clockStart.Add(7*24*time.Hour).Format(time.RFC3339) {
				t.Errorf("consent_expiration_time = %v", m["consent_expiration_time"])
			}
		}},
		{code: "PENDING_DISCONNECT", typ: "ITEM", check: func(t *testing.T, m map[string]any) {
			if m["reason"] != "INSTITUTION_MIGRATION" || m["disconnect_time"] != clockStart.Add(7*24*time.Hour).Format(time.RFC3339) {
				t.Errorf("reason/disconnect_time = %v %v", m["reason"], m["disconnect_time"])
			}
		}},
		{code: "USER_PERMISSION_REVOKED", typ: "ITEM", check: func(t *testing.T, m map[string]any) {
			if e, _ := m["error"].(map[string]any); e["error_code"] != "USER_PERMISSION_REVOKED" || e["status"] != 400.0 {
				t.Errorf("error = %v", m["error"])
			}
		}},
		{code: "LOGIN_REPAIRED", typ: "ITEM"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			rcv := newReceiver(t, nil)
			at, itemID := e.linkItem(t, rcv.url)
			req := plaid.NewSandboxItemFireWebhookRequest(at, tt.code)
			if tt.setType {
				req.SetWebhookType(plaid.WebhookType(tt.typ))
			}
			res, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*req).Execute()
			if err != nil || !res.GetWebhookFired() || !requestIDRE.MatchString(res.GetRequestId()) {
				t.Fatalf("fire_webhook = %+v %v", res, err)
			}
			h := rcv.waitCode(t, tt.code)
			m := jsonObj(t, h.Body)
			if m["webhook_type"] != tt.typ || m["item_id"] != itemID || m["environment"] != "sandbox" {
				t.Errorf("webhook = %s", h.Body)
			}
			if h.Header.Get("Content-Type") != "application/json" || h.Header.Get("Plaid-Verification") == "" {
				t.Errorf("webhook headers = %v", h.Header)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}

	t.Run("LOGIN_REPAIRED clears item.error", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		at, _ := e.linkItem(t, newReceiver(t, nil).url)
		if _, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "LOGIN_REPAIRED")).Execute(); err != nil {
			t.Fatal(err)
		}
		g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
		if err != nil || g.Item.Error.Get() != nil {
			t.Errorf("item.error after LOGIN_REPAIRED = %+v %v", g.Item.Error.Get(), err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		noHook, _ := e.linkItem(t, "")
		hookURL := newReceiver(t, nil).url
		authOnly, _ := e.linkItemWith(t, hookURL, []plaid.Products{plaid.PRODUCTS_AUTH})
		withHook, _ := e.linkItem(t, hookURL)
		fire := func(at, code, typ string) (*http.Response, error) {
			req := plaid.NewSandboxItemFireWebhookRequest(at, code)
			if typ != "" {
				req.SetWebhookType(plaid.WebhookType(typ))
			}
			_, hr, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*req).Execute()
			return hr, err
		}
		hr, err := fire(noHook, "DEFAULT_UPDATE", "")
		wantPlaidErr(t, err, hr, 400, "SANDBOX_ERROR", "SANDBOX_WEBHOOK_INVALID")
		hr, err = fire(authOnly, "SYNC_UPDATES_AVAILABLE", "")
		wantPlaidErr(t, err, hr, 400, "SANDBOX_ERROR", "SANDBOX_PRODUCT_NOT_ENABLED")
		hr, err = fire(withHook, "NOT_A_CODE", "")
		wantPlaidErr(t, err, hr, 400, "INVALID_REQUEST", "INVALID_FIELD")
		hr, err = fire(withHook, "SYNC_UPDATES_AVAILABLE", "ITEM")
		wantPlaidErr(t, err, hr, 400, "INVALID_REQUEST", "INVALID_FIELD")
		hr, err = fire(withHook, "", "")
		wantPlaidErr(t, err, hr, 400, "INVALID_REQUEST", "MISSING_FIELDS")
	})
}

func TestTransactionsSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	at, itemID := e.linkItem(t, "")
	s, hr, err := e.api.TransactionsSync(ctx).TransactionsSyncRequest(*plaid.NewTransactionsSyncRequest(at)).Execute()
	if err != nil || hr.StatusCode != 200 {
		t.Fatal(err)
	}
	if s.GetHasMore() || s.GetNextCursor() != "cursor-"+itemID || len(s.GetAccounts())+len(s.GetAdded())+len(s.GetModified())+len(s.GetRemoved()) != 0 || !requestIDRE.MatchString(s.GetRequestId()) {
		t.Errorf("transactions/sync = %+v", s)
	}
	_, hr, err = e.api.TransactionsSync(ctx).TransactionsSyncRequest(*plaid.NewTransactionsSyncRequest("access-sandbox-00000000-0000-4000-8000-000000000000")).Execute()
	wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")
}

// Wrong credentials fail every endpoint with 400 INVALID_INPUT/INVALID_API_KEYS,
// whether sent as headers (plaid-go) or in the body (raw).
func TestCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	hookURL := newReceiver(t, nil).url
	at, _ := e.linkItem(t, hookURL)
	kid := e.currentKid(t)

	calls := map[string]func(api *plaid.PlaidApiService) (*http.Response, error){
		"/link/token/create": func(api *plaid.PlaidApiService) (*http.Response, error) {
			r := linkReq("u")
			r.SetProducts(transactions())
			_, hr, err := api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*r).Execute()
			return hr, err
		},
		"/link/token/get": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest("link-sandbox-x")).Execute()
			return hr, err
		},
		"/sandbox/public_token/create": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(*plaid.NewSandboxPublicTokenCreateRequest(testInst, transactions())).Execute()
			return hr, err
		},
		"/item/public_token/exchange": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest("public-sandbox-x")).Execute()
			return hr, err
		},
		"/item/get": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
			return hr, err
		},
		"/item/remove": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute()
			return hr, err
		},
		"/item/webhook/update": func(api *plaid.PlaidApiService) (*http.Response, error) {
			r := plaid.NewItemWebhookUpdateRequest(at)
			r.SetWebhook("https://evil.example.com/")
			_, hr, err := api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*r).Execute()
			return hr, err
		},
		"/webhook_verification_key/get": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
			return hr, err
		},
		"/sandbox/item/fire_webhook": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "DEFAULT_UPDATE")).Execute()
			return hr, err
		},
		"/sandbox/item/reset_login": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute()
			return hr, err
		},
		"/transactions/sync": func(api *plaid.PlaidApiService) (*http.Response, error) {
			_, hr, err := api.TransactionsSync(ctx).TransactionsSyncRequest(*plaid.NewTransactionsSyncRequest(at)).Execute()
			return hr, err
		},
	}
	bad := []struct{ name, id, secret string }{
		{"wrong secret", testClientID, "wrong"},
		{"wrong client_id", "someone-else", testSecret},
		{"empty", "", ""},
	}
	for path, call := range calls {
		for _, b := range bad {
			t.Run("headers/"+b.name+path, func(t *testing.T) {
				hr, err := call(newClient(e.ts.URL, b.id, b.secret))
				pe := wantPlaidErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_API_KEYS")
				if pe.ErrorMessage != "invalid client_id or secret provided" {
					t.Errorf("error_message = %q", pe.ErrorMessage)
				}
			})
		}
	}
	// Nothing changed: the item is intact and its webhook unchanged.
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	if err != nil || g.Item.GetWebhook() != hookURL || g.Item.Error.Get() != nil {
		t.Errorf("item after rejected calls = %+v %v", g.Item, err)
	}

	// Body credentials (client_id/secret in the JSON), as Plaid also accepts.
	body := []struct {
		name, body string
		ok         bool
	}{
		{"right", `{"client_id":"` + testClientID + `","secret":"` + testSecret + `","institution_id":"ins_109508","initial_products":["transactions"]}`, true},
		{"wrong secret", `{"client_id":"` + testClientID + `","secret":"nope","institution_id":"ins_109508","initial_products":["transactions"]}`, false},
		{"wrong client_id", `{"client_id":"nope","secret":"` + testSecret + `","institution_id":"ins_109508","initial_products":["transactions"]}`, false},
		{"secret missing", `{"client_id":"` + testClientID + `","institution_id":"ins_109508","initial_products":["transactions"]}`, false},
		{"none", `{"institution_id":"ins_109508","initial_products":["transactions"]}`, false},
	}
	for _, tt := range body {
		t.Run("body/"+tt.name, func(t *testing.T) {
			t.Parallel()
			st, h, b := rawPost(t, e.ts.URL+"/sandbox/public_token/create", tt.body, credNone)
			m := jsonObj(t, b)
			if id, _ := m["request_id"].(string); h.Get("Content-Type") != "application/json" || !requestIDRE.MatchString(id) {
				t.Errorf("headers %v body %s", h, b)
			}
			if tt.ok {
				if pt, _ := m["public_token"].(string); st != 200 || !publicTokenRE.MatchString(pt) {
					t.Errorf("= %d %s", st, b)
				}
				return
			}
			if st != 400 || m["error_type"] != "INVALID_INPUT" || m["error_code"] != "INVALID_API_KEYS" || m["error_message"] != "invalid client_id or secret provided" {
				t.Errorf("= %d %s", st, b)
			}
			if v, ok := m["display_message"]; !ok || v != nil {
				t.Errorf("display_message = %v (present %v), want null", v, ok)
			}
		})
	}
}

// Malformed requests get Plaid's JSON error object, never a text page.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	post := func(path, ctype, body string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("PLAID-CLIENT-ID", testClientID)
		req.Header.Set("PLAID-SECRET", testSecret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := jsonDecode(res.Body, &m); err != nil {
			t.Fatalf("%s: body is not JSON: %v", path, err)
		}
		return res.StatusCode, res.Header, m
	}
	tests := []struct {
		name, path, ctype, body string
		status                  int
		typ, code               string
	}{
		{"not JSON", "/item/get", "application/json", "{", 400, "INVALID_REQUEST", "INVALID_BODY"},
		{"JSON array", "/item/get", "application/json", "[]", 400, "INVALID_REQUEST", "INVALID_BODY"},
		{"JSON null", "/item/get", "application/json", "null", 400, "INVALID_REQUEST", "INVALID_BODY"},
		{"text/plain", "/item/get", "text/plain", `{"access_token":"x"}`, 400, "INVALID_REQUEST", "INVALID_BODY"},
		{"no content type", "/item/get", "", `{"access_token":"x"}`, 400, "INVALID_REQUEST", "INVALID_BODY"},
		{"charset is fine", "/item/get", "application/json; charset=utf-8", `{"access_token":"x"}`, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN"},
		{"unknown endpoint", "/accounts/nope", "application/json", "{}", 404, "INVALID_REQUEST", "NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, h, m := post(tt.path, tt.ctype, tt.body)
			if st != tt.status || m["error_type"] != tt.typ || m["error_code"] != tt.code || h.Get("Content-Type") != "application/json" {
				t.Errorf("= %d %v %v", st, m, h)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		t.Parallel()
		res, err := http.Get(e.ts.URL + "/item/get")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := jsonDecode(res.Body, &m); err != nil || res.StatusCode != 405 || m["error_code"] != "INVALID_HTTP_METHOD" || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET = %d %v %v", res.StatusCode, m, err)
		}
	})
}

// Every endpoint, seen from a plain net/http client: success and error
// responses both carry Content-Type application/json and a request_id, and
// errors carry Plaid's four required error fields.
func TestRawResponsesHaveJSONAndRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	hookURL := newReceiver(t, nil).url
	field := func(b []byte, k string) string { v, _ := jsonObj(t, b)[k].(string); return v }
	call := func(path, body string, wantOK bool) []byte {
		t.Helper()
		st, h, b := rawPost(t, e.ts.URL+path, body, credBody)
		m := jsonObj(t, b)
		id, _ := m["request_id"].(string)
		if ct := h.Get("Content-Type"); ct != "application/json" || !requestIDRE.MatchString(id) {
			t.Errorf("%s -> %d: Content-Type %q request_id %q", path, st, ct, id)
		}
		if wantOK != (st == 200) {
			t.Errorf("%s %s -> %d %s", path, body, st, b)
		}
		if !wantOK {
			for _, k := range []string{"error_type", "error_code", "error_message", "display_message"} {
				if _, ok := m[k]; !ok {
					t.Errorf("%s error lacks %s: %s", path, k, b)
				}
			}
		}
		return b
	}
	pt := field(call("/sandbox/public_token/create", `{"institution_id":"ins_109508","initial_products":["transactions"],"options":{"webhook":"`+hookURL+`"}}`, true), "public_token")
	call("/sandbox/public_token/create", `{"institution_id":"ins_109508"}`, false)
	at := field(call("/item/public_token/exchange", `{"public_token":"`+pt+`"}`, true), "access_token")
	call("/item/public_token/exchange", `{"public_token":"`+pt+`"}`, false)
	lt := field(call("/link/token/create", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":"u"},"products":["transactions"]}`, true), "link_token")
	call("/link/token/create", `{}`, false)
	call("/link/token/get", `{"link_token":"`+lt+`"}`, true)
	call("/link/token/get", `{"link_token":"x"}`, false)
	call("/item/get", `{"access_token":"`+at+`"}`, true)
	call("/item/get", `{"access_token":"x"}`, false)
	call("/item/webhook/update", `{"access_token":"`+at+`","webhook":"`+hookURL+`"}`, true)
	call("/item/webhook/update", `{"access_token":"x","webhook":"`+hookURL+`"}`, false)
	call("/webhook_verification_key/get", `{"key_id":"`+e.currentKid(t)+`"}`, true)
	call("/webhook_verification_key/get", `{"key_id":"x"}`, false)
	call("/sandbox/item/fire_webhook", `{"access_token":"`+at+`","webhook_code":"DEFAULT_UPDATE"}`, true)
	call("/sandbox/item/fire_webhook", `{"access_token":"`+at+`","webhook_code":"x"}`, false)
	call("/transactions/sync", `{"access_token":"`+at+`"}`, true)
	call("/sandbox/item/reset_login", `{"access_token":"`+at+`"}`, true)
	call("/transactions/sync", `{"access_token":"`+at+`"}`, false)
	call("/sandbox/item/reset_login", `{"access_token":"x"}`, false)
	call("/item/remove", `{"access_token":"`+at+`"}`, true)
	call("/item/remove", `{"access_token":"`+at+`"}`, false)
}
