package plaidsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/plaid/plaid-go/v29/plaid"
)

// The Link JavaScript drop-in and the Link UI stand-in's server side. The
// browser side is driven in Chromium by examples/webapp's browser test.

func getBody(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func linkStep(t *testing.T, e *env, step string, body map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	st, _, rb := rawPost(t, e.ts.URL+"/__emu/link/ui/"+step, string(b), credNone)
	var out map[string]any
	if err := json.Unmarshal(rb, &out); err != nil {
		t.Fatalf("%s: %d %s", step, st, rb)
	}
	return st, out
}

func TestLinkScript(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	st, h, js := getBody(t, e.ts.URL+LinkScriptPath)
	if st != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET %s = %d %s", LinkScriptPath, st, h.Get("Content-Type"))
	}
	// The script opens its iframe on the emulator's origin as the browser reached it.
	if want := `var EMULATOR = "` + e.ts.URL + `"`; !strings.Contains(js, want) {
		t.Errorf("script does not carry its origin %q", want)
	}
	for _, api := range []string{"create:", "open:", "exit:", "submit:", "destroy:", "onSuccess", "onExit", "onEvent", "onLoad", "receivedRedirectUri"} {
		if !strings.Contains(js, api) {
			t.Errorf("script lacks %s", api)
		}
	}
	for _, f := range []string{"/__emu/link/ui/link-ui.js", "/__emu/link/ui/link.css"} {
		if st, _, b := getBody(t, e.ts.URL+f); st != http.StatusOK || len(b) == 0 {
			t.Errorf("GET %s = %d", f, st)
		}
	}
}

func TestLinkPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	lt := newLinkToken(t, e, "")
	page := func(token, origin string) (int, string) {
		st, _, b := getBody(t, e.ts.URL+"/__emu/link/ui?id=f1&token="+url.QueryEscape(token)+"&origin="+url.QueryEscape(origin))
		return st, b
	}
	st, b := page(lt, "http://127.0.0.1:8080")
	if st != http.StatusOK || !strings.Contains(b, `"parent_origin":"http://127.0.0.1:8080"`) || !strings.Contains(b, `"error":null`) ||
		!strings.Contains(b, `"update_mode":false`) || !strings.Contains(b, "First Platypus Bank") {
		t.Errorf("Link page for a good token = %d\n%s", st, b)
	}
	// An unknown token opens Link on Plaid's INVALID_LINK_TOKEN error.
	if st, b := page("link-sandbox-nope", "http://127.0.0.1:8080"); st != http.StatusOK || !strings.Contains(b, "INVALID_LINK_TOKEN") {
		t.Errorf("Link page for an unknown token = %d\n%s", st, b)
	}
	// The origin messages go to must be a bare origin.
	for _, o := range []string{"", "*", "javascript:alert(1)", "http://a.example/path"} {
		if st, _ := page(lt, o); st != http.StatusBadRequest {
			t.Errorf("origin %q: status %d, want 400", o, st)
		}
	}
}

func TestLinkUISteps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, Options{})
	lt := newLinkToken(t, e, "")
	creds := func(password string) map[string]any {
		return map[string]any{"link_token": lt, "institution_id": testInst, "username": "user_good", "password": password}
	}
	// Plaid's sandbox error credentials, and a wrong password.
	tests := []struct {
		password, typ, code string
		status              int
	}{
		{"error_ITEM_LOCKED", "ITEM_ERROR", "ITEM_LOCKED", 400},
		{"error_INVALID_MFA", "ITEM_ERROR", "INVALID_MFA", 400},
		{"error_INSTITUTION_DOWN", "INSTITUTION_ERROR", "INSTITUTION_DOWN", 400},
		{"error_INTERNAL_SERVER_ERROR", "API_ERROR", "INTERNAL_SERVER_ERROR", 500},
		{"wrong", "ITEM_ERROR", "INVALID_CREDENTIALS", 400},
		{"error_NOT_A_CODE", "ITEM_ERROR", "INVALID_CREDENTIALS", 400},
	}
	for _, tt := range tests {
		st, out := linkStep(t, e, "credentials", creds(tt.password))
		pe, _ := out["error"].(map[string]any)
		if st != tt.status || pe["error_type"] != tt.typ || pe["error_code"] != tt.code || pe["display_message"] == nil {
			t.Errorf("credentials %s = %d %v, want %d %s/%s", tt.password, st, out, tt.status, tt.typ, tt.code)
		}
	}
	// Good credentials list user_good's accounts; completing needs one.
	st, out := linkStep(t, e, "credentials", creds("pass_good"))
	accts, _ := out["accounts"].([]any)
	if st != http.StatusOK || len(accts) == 0 {
		t.Fatalf("credentials pass_good = %d %v", st, out)
	}
	first := accts[0].(map[string]any)
	if first["name"] != "Plaid Checking" || first["mask"] != "0000" || len(first["id"].(string)) != 37 {
		t.Errorf("first account = %v", first)
	}
	if st, _ := linkStep(t, e, "complete", creds("pass_good")); st != http.StatusBadRequest {
		t.Errorf("complete without accounts = %d, want 400", st)
	}
	body := creds("pass_good")
	body["account_ids"] = []string{first["id"].(string)}
	st, out = linkStep(t, e, "complete", body)
	pt, _ := out["public_token"].(string)
	if st != http.StatusOK || !strings.HasPrefix(pt, "public-sandbox-") {
		t.Fatalf("complete = %d %v", st, out)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
	if err != nil {
		t.Fatal(err)
	}

	// Update mode: the item's institution is fixed by the token, and
	// completing clears ITEM_LOGIN_REQUIRED.
	if _, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(ex.GetAccessToken())).Execute(); err != nil {
		t.Fatal(err)
	}
	ureq := linkReq("u")
	ureq.SetAccessToken(ex.GetAccessToken())
	ult, _, err := e.api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*ureq).Execute()
	if err != nil {
		t.Fatal(err)
	}
	_, _, page := getBody(t, e.ts.URL+"/__emu/link/ui?id=f&origin=http%3A%2F%2F127.0.0.1%3A1&token="+url.QueryEscape(ult.GetLinkToken()))
	if !strings.Contains(page, `"update_mode":true`) || !strings.Contains(page, `"institution_id":"`+testInst+`"`) {
		t.Errorf("update-mode page lacks the item's institution:\n%s", page)
	}
	body = map[string]any{"link_token": ult.GetLinkToken(), "institution_id": "ins_1", "username": "user_good", "password": "pass_good"}
	if st, out := linkStep(t, e, "credentials", body); st != http.StatusOK { // the token's item fixes the institution
		t.Fatalf("update-mode credentials = %d %v", st, out)
	}
	body["account_ids"] = []string{"x"}
	if st, out := linkStep(t, e, "complete", body); st != http.StatusOK || out["public_token"] == nil {
		t.Fatalf("update-mode complete = %d %v", st, out)
	}
	g, _, err := e.api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(ex.GetAccessToken())).Execute()
	if err != nil || g.Item.GetInstitutionId() != testInst || g.Item.Error.IsSet() && g.Item.Error.Get() != nil {
		t.Errorf("item after update mode = %+v %v, want no error", g.Item, err)
	}

	// An unknown link token.
	body["link_token"] = "link-sandbox-nope"
	if st, out := linkStep(t, e, "credentials", body); st != 400 || out["error"].(map[string]any)["error_code"] != "INVALID_LINK_TOKEN" {
		t.Errorf("unknown token = %d %v", st, out)
	}
}
