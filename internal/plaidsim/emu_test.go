package plaidsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"
)

// The emulator-only surface under /__emu/ and CompleteLink, the stand-in
// for the Link UI.

func newLinkToken(t *testing.T, e *env, webhook string) string {
	t.Helper()
	req := linkReq("u")
	req.SetProducts(transactions())
	if webhook != "" {
		req.SetWebhook(webhook)
	}
	lt, _, err := e.api.LinkTokenCreate(context.Background()).LinkTokenCreateRequest(*req).Execute()
	if err != nil {
		t.Fatal(err)
	}
	return lt.GetLinkToken()
}

func TestCompleteLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	lt := newLinkToken(t, e, rcv.url)

	tests := []struct {
		name, inst, user string
		want             error
	}{
		{"bad username", testInst, "user_bad", ErrCredentials},
		{"bad institution", "chase", "user_good", ErrInstitution},
		{"unknown token", testInst, "user_good", ErrLinkToken},
	}
	for _, tt := range tests {
		tok := lt
		if tt.want == ErrLinkToken {
			tok = "link-sandbox-nope"
		}
		if pt, err := e.sim.CompleteLink(tok, tt.inst, tt.user); !errors.Is(err, tt.want) || pt != "" {
			t.Errorf("%s: CompleteLink = %q %v, want %v", tt.name, pt, err, tt.want)
		}
	}
	// A link token can be used more than once in the Sandbox; each use is a new item.
	pt1, err := e.sim.CompleteLink(lt, "ins_3", "")
	if err != nil {
		t.Fatal(err)
	}
	pt2, err := e.sim.CompleteLink(lt, testInst, "user_good")
	if err != nil || pt2 == pt1 {
		t.Fatalf("second CompleteLink = %q %v", pt2, err)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt1)).Execute()
	if err != nil {
		t.Fatal(err)
	}
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(ex.GetAccessToken())).Execute()
	if err != nil || g.Item.GetInstitutionId() != "ins_3" || g.Item.GetWebhook() != rcv.url || len(g.Item.GetProducts()) != 1 {
		t.Errorf("item from Link = %+v %v (want the link token's webhook and products)", g.Item, err)
	}
	// Link tokens expire after 4 hours.
	e.clk.Add(4*time.Hour + time.Second)
	if _, err := e.sim.CompleteLink(lt, testInst, "user_good"); !errors.Is(err, ErrLinkToken) {
		t.Errorf("CompleteLink after 4h = %v, want ErrLinkToken", err)
	}
}

// The HTML page and its form post complete a link token as a user would.
func TestEmulatorLinkPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	lt := newLinkToken(t, e, "")
	res, err := http.Get(e.ts.URL + "/__emu/link?token=" + url.QueryEscape(lt))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), `value="`+lt+`"`) {
		t.Fatalf("link page = %d %s", res.StatusCode, page)
	}
	res, err = http.PostForm(e.ts.URL+"/__emu/link", url.Values{"token": {lt}, "institution_id": {testInst}, "username": {"user_good"}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`<code id="public_token">([^<]+)</code>`).FindSubmatch(out)
	if res.StatusCode != 200 || m == nil || !publicTokenRE.Match(m[1]) {
		t.Fatalf("form post = %d %s", res.StatusCode, out)
	}
	if _, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(string(m[1]))).Execute(); err != nil {
		t.Errorf("exchange of the page's public token: %v", err)
	}
	res, err = http.PostForm(e.ts.URL+"/__emu/link", url.Values{"token": {lt}, "institution_id": {testInst}, "username": {"user_bad"}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || strings.Contains(string(out), "public-sandbox-") {
		t.Errorf("bad username via the page = %d %s", res.StatusCode, out)
	}
}

func TestEmulatorJSONEndpoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)

	// /__emu/link/complete (institution defaults to ins_109508).
	lt := newLinkToken(t, e, rcv.url)
	st, _, b := rawPost(t, e.ts.URL+"/__emu/link/complete", `{"link_token":"`+lt+`","username":"user_good"}`, credNone)
	pt, _ := jsonObj(t, b)["public_token"].(string)
	if st != 200 || !publicTokenRE.MatchString(pt) {
		t.Fatalf("/__emu/link/complete = %d %s", st, b)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
	if err != nil {
		t.Fatal(err)
	}
	at, itemID := ex.GetAccessToken(), ex.GetItemId()
	for _, bad := range []string{`{"link_token":"nope"}`, `{"link_token":"` + lt + `","username":"user_bad"}`, `not json`} {
		if st, _, b := rawPost(t, e.ts.URL+"/__emu/link/complete", bad, credNone); st != 400 || jsonObj(t, b)["error"] == "" {
			t.Errorf("/__emu/link/complete %s = %d %s", bad, st, b)
		}
	}

	// /__emu/item/reset_login works from an item id alone and fires ITEM/ERROR.
	st, _, b = rawPost(t, e.ts.URL+"/__emu/item/reset_login", `{"item_id":"`+itemID+`"}`, credNone)
	if m := jsonObj(t, b); st != 200 || m["reset_login"] != true || m["item_id"] != itemID {
		t.Fatalf("reset_login = %d %s", st, b)
	}
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()
	if err != nil || g.Item.Error.Get() == nil || g.Item.Error.Get().ErrorCode != "ITEM_LOGIN_REQUIRED" {
		t.Errorf("item after reset = %+v %v", g.Item.Error.Get(), err)
	}
	if h := rcv.waitCode(t, "ERROR"); !strings.Contains(string(h.Body), `"ITEM_LOGIN_REQUIRED"`) {
		t.Errorf("webhook = %s", h.Body)
	}
	if st, _, _ := rawPost(t, e.ts.URL+"/__emu/item/reset_login", `{"item_id":"nope"}`, credNone); st != 404 {
		t.Errorf("unknown item = %d, want 404", st)
	}

	// /__emu/deliveries lists the log as JSON.
	waitDeliveries(t, e.sim, "the ERROR delivery", func(ds []Delivery) bool { return len(ds) == 1 && ds[0].Status == 200 })
	res, err := http.Get(e.ts.URL + "/__emu/deliveries")
	if err != nil {
		t.Fatal(err)
	}
	var ds []Delivery
	err = json.NewDecoder(res.Body).Decode(&ds)
	res.Body.Close()
	if err != nil || len(ds) != 1 || ds[0].ItemID != itemID || ds[0].Status != 200 || ds[0].Attempt != 1 || ds[0].URL != rcv.url || !strings.Contains(ds[0].Body, "ITEM_LOGIN_REQUIRED") {
		t.Errorf("/__emu/deliveries = %+v %v", ds, err)
	}

	// /__emu/webhook/send refuses unknown faults; unknown paths are JSON 404s.
	if st, _, b := rawPost(t, e.ts.URL+"/__emu/webhook/send", `{"item_id":"`+itemID+`","body":{"a":1},"fault":"gremlins"}`, credNone); st != 400 || !strings.Contains(string(b), "gremlins") {
		t.Errorf("unknown fault = %d %s", st, b)
	}
	if st, h, b := rawPost(t, e.ts.URL+"/__emu/nope", `{}`, credNone); st != 404 || h.Get("Content-Type") != "application/json" || jsonObj(t, b)["error"] == nil {
		t.Errorf("unknown emu endpoint = %d %s", st, b)
	}
}
