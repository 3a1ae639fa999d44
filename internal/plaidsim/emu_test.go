package plaidsim

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/plaid/plaid-go/v29/plaid"
)

// The Link stand-in: the HTML page and the form post complete a link token
// as a user would and return a public token that exchanges.
func TestEmulatorLinkPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	ctx := context.Background()
	req := plaid.NewLinkTokenCreateRequest("Safeclose", "en", []plaid.CountryCode{plaid.COUNTRYCODE_US}, plaid.LinkTokenCreateRequestUser{ClientUserId: "u"})
	req.SetProducts([]plaid.Products{plaid.PRODUCTS_TRANSACTIONS})
	lt, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(e.ts.URL + "/__emu/link?token=" + url.QueryEscape(lt.GetLinkToken()))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), "<form") {
		t.Fatalf("link page = %d %s", res.StatusCode, page)
	}
	res, err = http.PostForm(e.ts.URL+"/__emu/link", url.Values{"token": {lt.GetLinkToken()}, "institution_id": {"ins_109508"}, "username": {"user_good"}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	i := strings.Index(string(out), "public-sandbox-")
	if res.StatusCode != 200 || i < 0 {
		t.Fatalf("form post = %d %s", res.StatusCode, out)
	}
	pt := string(out[i:])
	pt = pt[:strings.IndexAny(pt, "\"<' \n")]
	if _, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute(); err != nil {
		t.Errorf("exchange of the page's public token: %v", err)
	}
	// A bad username fails like Plaid's sandbox does (no public token).
	if _, err := e.sim.CompleteLink(lt.GetLinkToken(), "ins_109508", "user_bad"); err == nil {
		t.Error("CompleteLink with user_bad succeeded")
	}
}

// /__emu/item/reset_login works from an item id alone and delivers the
// signed ITEM/ERROR webhook.
func TestEmulatorResetLoginByItemID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	hooks := newHookSink(t)
	at, itemID := e.linkItem(t, hooks.url)
	st, b := rawPost(t, e.ts.URL+"/__emu/item/reset_login", `{"item_id":"`+itemID+`"}`, false)
	if st != 200 || !strings.Contains(string(b), `"reset_login":true`) {
		t.Fatalf("reset_login = %d %s", st, b)
	}
	g, _, err := e.api.ItemGet(context.Background()).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	if err != nil || g.Item.Error.Get() == nil || g.Item.Error.Get().ErrorCode != "ITEM_LOGIN_REQUIRED" {
		t.Errorf("item after reset = %+v %v", g.Item.Error, err)
	}
	if got := hooks.waitFor(t, 1)["ERROR"]; !strings.Contains(string(got), "ITEM_LOGIN_REQUIRED") {
		t.Errorf("webhook = %s", got)
	}
	if st, _ := rawPost(t, e.ts.URL+"/__emu/item/reset_login", `{"item_id":"nope"}`, false); st != 404 {
		t.Errorf("unknown item = %d, want 404", st)
	}
}
