package plaidsim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"
)

const (
	testClientID = "plaidsim-test-client"
	testSecret   = "plaidsim-test-secret"
)

// clock is an injectable, advanceable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	sim *Server
	ts  *httptest.Server
	api *plaid.PlaidApiService
	clk *clock
}

func newEnv(t testing.TB, o Options) *env {
	t.Helper()
	e := &env{clk: newClock()}
	o.ClientID, o.Secret = testClientID, testSecret
	if o.Now == nil {
		o.Now = e.clk.Now
	}
	if o.TimeScale == 0 {
		o.TimeScale = 0.0001
	}
	sim, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.sim = sim
	e.ts = httptest.NewServer(sim)
	t.Cleanup(func() { e.ts.Close(); sim.Close() })
	e.api = client(e.ts.URL, testClientID, testSecret)
	return e
}

func client(url, id, secret string) *plaid.PlaidApiService {
	cfg := plaid.NewConfiguration()
	cfg.Servers = plaid.ServerConfigurations{{URL: url}}
	cfg.AddDefaultHeader("PLAID-CLIENT-ID", id)
	cfg.AddDefaultHeader("PLAID-SECRET", secret)
	return plaid.NewAPIClient(cfg).PlaidApi
}

func plaidErr(t testing.TB, err error) plaid.PlaidError {
	t.Helper()
	if err == nil {
		t.Fatal("want a Plaid error, got success")
	}
	pe, perr := plaid.ToPlaidError(err)
	if perr != nil {
		t.Fatalf("not a Plaid error: %v", err)
	}
	return pe
}

func wantErr(t testing.TB, err error, hr *http.Response, status int, typ, code string) {
	t.Helper()
	pe := plaidErr(t, err)
	if hr == nil || hr.StatusCode != status || string(pe.ErrorType) != typ || pe.ErrorCode != code || pe.GetRequestId() == "" || pe.ErrorMessage == "" {
		st := 0
		if hr != nil {
			st = hr.StatusCode
		}
		t.Fatalf("error = %d %s/%s (request_id %q, msg %q); want %d %s/%s", st, pe.ErrorType, pe.ErrorCode, pe.GetRequestId(), pe.ErrorMessage, status, typ, code)
	}
}

// linkItem creates an item through sandbox/public_token/create and the exchange.
func (e *env) linkItem(t testing.TB, webhook string) (accessToken, itemID string) {
	t.Helper()
	ctx := context.Background()
	req := plaid.NewSandboxPublicTokenCreateRequest("ins_109508", []plaid.Products{plaid.PRODUCTS_TRANSACTIONS})
	if webhook != "" {
		req.SetOptions(plaid.SandboxPublicTokenCreateRequestOptions{Webhook: &webhook})
	}
	pt, _, err := e.api.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatalf("sandbox/public_token/create: %v", err)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt.GetPublicToken())).Execute()
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return ex.GetAccessToken(), ex.GetItemId()
}

func TestLinkTokenCreateAndGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	user := plaid.LinkTokenCreateRequestUser{ClientUserId: "user-1"}
	req := plaid.NewLinkTokenCreateRequest("Safeclose", "en", []plaid.CountryCode{plaid.COUNTRYCODE_US}, user)
	req.SetProducts([]plaid.Products{plaid.PRODUCTS_TRANSACTIONS})
	req.SetWebhook("https://example.com/hook")
	res, hr, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.GetLinkToken(), "link-sandbox-") || res.GetRequestId() == "" || hr.Header.Get("Content-Type") != "application/json" {
		t.Errorf("link/token/create = %+v %v", res, hr.Header)
	}
	if got, want := res.GetExpiration(), e.clk.Now().Add(4*time.Hour); !got.Equal(want) {
		t.Errorf("expiration = %v, want %v", got, want)
	}
	g, _, err := e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(res.GetLinkToken())).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if g.GetLinkToken() != res.GetLinkToken() || g.Metadata.GetClientName() != "Safeclose" || g.Metadata.GetWebhook() != "https://example.com/hook" {
		t.Errorf("link/token/get = %+v", g)
	}
	_, hr, err = e.api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest("link-sandbox-nope")).Execute()
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_LINK_TOKEN")

	// Update mode: an access token, no products; 30-minute life.
	at, _ := e.linkItem(t, "")
	up := plaid.NewLinkTokenCreateRequest("Safeclose", "en", []plaid.CountryCode{plaid.COUNTRYCODE_US}, user)
	up.SetAccessToken(at)
	ur, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	if err != nil {
		t.Fatalf("update mode: %v", err)
	}
	if got, want := ur.GetExpiration(), e.clk.Now().Add(30*time.Minute); !got.Equal(want) {
		t.Errorf("update-mode expiration = %v, want %v", got, want)
	}
	up.SetAccessToken("access-sandbox-unknown")
	_, hr, err = e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")
}

func TestLinkTokenCreateRequiredFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	tests := []struct {
		name, body, code string
	}{
		{"no client_name", `{"language":"en","country_codes":["US"],"user":{"client_user_id":"u"},"products":["transactions"]}`, "MISSING_FIELDS"},
		{"no user", `{"client_name":"x","language":"en","country_codes":["US"],"products":["transactions"]}`, "MISSING_FIELDS"},
		{"no language", `{"client_name":"x","country_codes":["US"],"user":{"client_user_id":"u"},"products":["transactions"]}`, "MISSING_FIELDS"},
		{"empty client_user_id", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":""},"products":["transactions"]}`, "INVALID_FIELD"},
		{"bad language", `{"client_name":"x","language":"xx","country_codes":["US"],"user":{"client_user_id":"u"},"products":["transactions"]}`, "INVALID_FIELD"},
		{"no products", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":"u"}}`, "INVALID_FIELD"},
		{"bad country", `{"client_name":"x","language":"en","country_codes":["ZZ"],"user":{"client_user_id":"u"},"products":["transactions"]}`, "INVALID_COUNTRY_CODE"},
		{"not JSON", `{`, "INVALID_BODY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, body := rawPost(t, e.ts.URL+"/link/token/create", tt.body, true)
			var pe struct {
				ErrorType, ErrorCode, RequestID string
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("error body is not JSON: %s", body)
			}
			pe.ErrorType, _ = m["error_type"].(string)
			pe.ErrorCode, _ = m["error_code"].(string)
			pe.RequestID, _ = m["request_id"].(string)
			if st != 400 || pe.ErrorType != "INVALID_REQUEST" && pe.ErrorType != "INVALID_INPUT" || pe.ErrorCode != tt.code || pe.RequestID == "" {
				t.Errorf("= %d %s", st, body)
			}
		})
	}
}

// rawPost posts JSON with credentials in headers (or in the body when
// headers is false) and returns status and body.
func rawPost(t testing.TB, url, body string, headers bool) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if headers {
		req.Header.Set("PLAID-CLIENT-ID", testClientID)
		req.Header.Set("PLAID-SECRET", testSecret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	return res.StatusCode, b
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	bad := client(e.ts.URL, testClientID, "wrong")
	_, hr, err := bad.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(
		*plaid.NewSandboxPublicTokenCreateRequest("ins_109508", []plaid.Products{plaid.PRODUCTS_TRANSACTIONS})).Execute()
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_API_KEYS")
	// Body credentials work too, and wrong ones fail the same way.
	st, b := rawPost(t, e.ts.URL+"/sandbox/public_token/create",
		`{"client_id":"`+testClientID+`","secret":"`+testSecret+`","institution_id":"ins_109508","initial_products":["transactions"]}`, false)
	if st != 200 || !strings.Contains(string(b), `"public_token":"public-sandbox-`) || !strings.Contains(string(b), `"request_id"`) {
		t.Errorf("body credentials = %d %s", st, b)
	}
	st, b = rawPost(t, e.ts.URL+"/sandbox/public_token/create",
		`{"client_id":"`+testClientID+`","secret":"nope","institution_id":"ins_109508","initial_products":["transactions"]}`, false)
	if st != 400 || !strings.Contains(string(b), `"INVALID_API_KEYS"`) {
		t.Errorf("wrong body credentials = %d %s", st, b)
	}
	st, b = rawPost(t, e.ts.URL+"/no/such/endpoint", `{}`, true)
	if st != 404 || !strings.Contains(string(b), `"request_id"`) {
		t.Errorf("unknown endpoint = %d %s", st, b)
	}
}

func TestExchangeSingleUseAndExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	create := func() string {
		pt, _, err := e.api.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(
			*plaid.NewSandboxPublicTokenCreateRequest("ins_109508", []plaid.Products{plaid.PRODUCTS_TRANSACTIONS})).Execute()
		if err != nil {
			t.Fatal(err)
		}
		return pt.GetPublicToken()
	}
	exchange := func(pt string) (*plaid.ItemPublicTokenExchangeResponse, *http.Response, error) {
		r, hr, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
		return &r, hr, err
	}
	pt := create()
	r, _, err := exchange(pt)
	if err != nil || !strings.HasPrefix(r.GetAccessToken(), "access-sandbox-") || r.GetItemId() == "" {
		t.Fatalf("exchange = %+v %v", r, err)
	}
	_, hr, err := exchange(pt)
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")
	old := create()
	e.clk.Add(31 * time.Minute)
	_, hr, err = exchange(old)
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")
}

func TestItemLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	at, itemID := e.linkItem(t, "")
	get := func() (plaid.ItemGetResponse, *http.Response, error) {
		return e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	}
	g, _, err := get()
	if err != nil || g.Item.GetItemId() != itemID || g.Item.GetInstitutionId() != "ins_109508" || g.Item.Error.IsSet() && g.Item.Error.Get() != nil {
		t.Fatalf("item/get = %+v %v", g.Item, err)
	}
	// Webhook update.
	wu := plaid.NewItemWebhookUpdateRequest(at)
	wu.SetWebhook("https://example.com/new")
	w, _, err := e.api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*wu).Execute()
	if err != nil || w.Item.GetWebhook() != "https://example.com/new" {
		t.Errorf("item/webhook/update = %+v %v", w.Item, err)
	}
	// Reset login: item.error becomes ITEM_LOGIN_REQUIRED.
	rl, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute()
	if err != nil || !rl.GetResetLogin() {
		t.Fatalf("reset_login = %+v %v", rl, err)
	}
	g, _, err = get()
	if err != nil || g.Item.Error.Get() == nil || g.Item.Error.Get().ErrorCode != "ITEM_LOGIN_REQUIRED" {
		t.Fatalf("item/get after reset_login = %+v %v", g.Item.Error, err)
	}
	// Update-mode Link repairs it.
	up := plaid.NewLinkTokenCreateRequest("Safeclose", "en", []plaid.CountryCode{plaid.COUNTRYCODE_US}, plaid.LinkTokenCreateRequestUser{ClientUserId: "u"})
	up.SetAccessToken(at)
	lt, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.CompleteLink(lt.GetLinkToken(), "ins_109508", "user_good"); err != nil {
		t.Fatalf("CompleteLink(update) = %v", err)
	}
	g, _, err = get()
	if err != nil || g.Item.Error.Get() != nil {
		t.Fatalf("item/get after update mode = %+v %v", g.Item.Error, err)
	}
	// Fire webhook (needs a webhook URL; the item has one now).
	fw, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, "DEFAULT_UPDATE")).Execute()
	if err != nil || !fw.GetWebhookFired() {
		t.Errorf("fire_webhook = %+v %v", fw, err)
	}
	// Remove: the access token is dead afterwards.
	if _, _, err := e.api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute(); err != nil {
		t.Fatal(err)
	}
	_, hr, err := get()
	wantErr(t, err, hr, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")
}

func TestWebhookVerificationKeyGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	kid := currentKid(t, e)
	k, _, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
	if err != nil {
		t.Fatal(err)
	}
	if k.Key.Kid != kid || k.Key.Alg != "ES256" || k.Key.Crv != "P-256" || k.Key.Kty != "EC" || k.Key.Use != "sig" || k.Key.ExpiredAt.Get() != nil {
		t.Errorf("key = %+v", k.Key)
	}
	_, hr, err := e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest("no-such-kid")).Execute()
	pe := plaidErr(t, err)
	if hr.StatusCode != 400 || pe.ErrorCode == "" {
		t.Errorf("unknown kid = %d %+v", hr.StatusCode, pe)
	}
	// Rotation: a new kid; the old key is still served, with expired_at.
	newKid, err := e.sim.RotateKey()
	if err != nil || newKid == kid {
		t.Fatalf("RotateKey = %q %v", newKid, err)
	}
	k, _, err = e.api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(kid)).Execute()
	if err != nil || k.Key.ExpiredAt.Get() == nil {
		t.Errorf("old key after rotation = %+v %v; want expired_at set", k.Key, err)
	}
}

// currentKid signs something and reads the kid from the JWT header.
func currentKid(t testing.TB, e *env) string {
	t.Helper()
	j, err := e.sim.Sign([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := b64dec(strings.Split(j, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Kid string }
	json.Unmarshal(h, &hdr)
	return hdr.Kid
}

// Hammer: many clients at once.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				at, id := e.linkItem(t, "")
				g, _, err := e.api.ItemGet(context.Background()).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
				if err != nil || g.Item.GetItemId() != id {
					t.Errorf("item/get = %v %v", g.Item.GetItemId(), err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate item id %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 16*20 {
		t.Errorf("%d distinct items, want %d", len(seen), 16*20)
	}
}

func TestDeterministicSeed(t *testing.T) {
	t.Parallel()
	ids := func() []string {
		e := newEnv(t, Options{Seed: 42})
		var out []string
		for range 3 {
			_, id := e.linkItem(t, "")
			out = append(out, id)
		}
		return out
	}
	a, b := ids(), ids()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("seeded emulators differ: %v vs %v", a, b)
	}
}

func b64dec(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func sleepShort() { time.Sleep(10 * time.Millisecond) }
