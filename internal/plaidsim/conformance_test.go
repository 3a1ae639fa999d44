package plaidsim

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/plaid/plaid-go/v29/plaid"
)

// Conformance against Plaid's own OpenAPI spec (testdata/openapi.yml, ~3 MB):
// every response body the emulator writes and every webhook body it sends is
// validated by kin-openapi (types, formats, enums, required fields) and by a
// strict walk that rejects any property the schema does not declare (Plaid's
// schemas mostly say additionalProperties: true, so the library alone would
// accept invented fields).

var (
	specOnce sync.Once
	spec     *openapi3.T
	specErr  error
)

func loadSpec(t testing.TB) *openapi3.T {
	t.Helper()
	specOnce.Do(func() {
		l := openapi3.NewLoader()
		l.IsExternalRefsAllowed = false
		spec, specErr = l.LoadFromFile("testdata/openapi.yml")
	})
	if specErr != nil {
		t.Fatalf("load testdata/openapi.yml: %v", specErr)
	}
	return spec
}

func componentSchema(t testing.TB, name string) *openapi3.Schema {
	t.Helper()
	ref := loadSpec(t).Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("spec has no components/schemas/%s", name)
	}
	return ref.Value
}

// responseSchema is the schema of path's response with status: the "200"
// response, or the "default" response (Plaid's error object) otherwise.
func responseSchema(t testing.TB, path string, status int) *openapi3.Schema {
	t.Helper()
	pi := loadSpec(t).Paths.Value(path)
	if pi == nil || pi.Post == nil {
		t.Fatalf("spec has no POST %s", path)
	}
	var r *openapi3.ResponseRef
	if status == 200 {
		r = pi.Post.Responses.Status(200)
	} else {
		r = pi.Post.Responses.Default()
	}
	if r == nil || r.Value == nil || r.Value.Content.Get("application/json") == nil {
		t.Fatalf("spec has no %d application/json response for %s", status, path)
	}
	s := r.Value.Content.Get("application/json").Schema
	if status != 200 && s.Value != componentSchema(t, "PlaidError") {
		t.Fatalf("%s: default response is %q, not PlaidError", path, s.Ref)
	}
	return s.Value
}

var visitOpts = []openapi3.SchemaValidationOption{
	openapi3.MultiErrors(), openapi3.VisitAsResponse(), openapi3.EnableFormatValidation(),
}

// conform validates body against s with kin-openapi and the strict walk.
func conform(t testing.TB, what string, s *openapi3.Schema, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", what, err, body)
		return
	}
	if err := s.VisitJSON(v, visitOpts...); err != nil {
		t.Errorf("%s: violates Plaid's schema: %v\n%s", what, err, body)
	}
	if bad := undeclared("$", v, s); len(bad) > 0 {
		t.Errorf("%s: properties Plaid's schema does not declare: %s\n%s", what, strings.Join(bad, ", "), body)
	}
}

// flatten returns s and every schema it is composed of through allOf ($refs
// are already resolved into .Value by the loader).
func flatten(s *openapi3.Schema, into []*openapi3.Schema) []*openapi3.Schema {
	if s == nil || slices.Contains(into, s) {
		return into
	}
	into = append(into, s)
	for _, a := range s.AllOf {
		into = flatten(a.Value, into)
	}
	return into
}

// undeclared walks v against s and returns the JSON paths of object keys no
// schema declares: properties are gathered across $ref and allOf; nested
// objects and array items (items) are walked; null values are left to
// VisitJSON (nullable); a typed additionalProperties schema declares any key;
// with oneOf/anyOf the value must be clean against some alternative.
func undeclared(path string, v any, s *openapi3.Schema) []string {
	if s == nil || v == nil {
		return nil
	}
	set := flatten(s, nil)
	for _, x := range set {
		var alts openapi3.SchemaRefs
		alts = append(alts, x.OneOf...)
		alts = append(alts, x.AnyOf...)
		if len(alts) == 0 {
			continue
		}
		var best []string
		clean := false
		for i, a := range alts {
			bad := undeclared(path, v, a.Value)
			if len(bad) == 0 {
				clean = true
				break
			}
			if i == 0 || len(bad) < len(best) {
				best = bad
			}
		}
		if !clean {
			return best
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props := map[string]openapi3.SchemaRefs{}
		var extra *openapi3.Schema
		for _, sc := range set {
			for k, p := range sc.Properties {
				props[k] = append(props[k], p)
			}
			if ap := sc.AdditionalProperties.Schema; ap != nil && ap.Value != nil && !ap.Value.IsEmpty() {
				extra = ap.Value
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var bad []string
		for _, k := range keys {
			switch ps := props[k]; {
			case len(ps) == 1:
				bad = append(bad, undeclared(path+"."+k, x[k], ps[0].Value)...)
			case len(ps) > 1:
				bad = append(bad, undeclared(path+"."+k, x[k], &openapi3.Schema{AllOf: ps})...)
			case extra != nil:
				bad = append(bad, undeclared(path+"."+k, x[k], extra)...)
			default:
				bad = append(bad, path+"."+k)
			}
		}
		return bad
	case []any:
		var items *openapi3.Schema
		for _, sc := range set {
			if sc.Items != nil && sc.Items.Value != nil {
				items = sc.Items.Value
				break
			}
		}
		var bad []string
		for i, e := range x {
			bad = append(bad, undeclared(fmt.Sprintf("%s[%d]", path, i), e, items)...)
		}
		return bad
	}
	return nil
}

// The Plaid endpoints the emulator serves.
var plaidPaths = []string{
	"/link/token/create", "/link/token/get", "/item/public_token/exchange", "/item/get", "/item/remove",
	"/item/webhook/update", "/webhook_verification_key/get", "/sandbox/public_token/create",
	"/sandbox/item/fire_webhook", "/sandbox/item/reset_login", "/transactions/sync",
}

// TestResponsesConformToPlaidSpec drives every endpoint to success and to
// errors and validates every body the emulator wrote against its schema.
func TestResponsesConformToPlaidSpec(t *testing.T) {
	t.Parallel()
	loadSpec(t)
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	api := e.api

	// Successes (plaid-go).
	at, _ := e.linkItem(t, rcv.url)
	plain, _ := e.linkItem(t, "")
	lr := linkReq("u")
	lr.SetProducts(transactions())
	lr.SetWebhook(rcv.url)
	lr.SetRedirectUri("https://app.example.com/oauth")
	lt, _, err := api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*lr).Execute()
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ any, _ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(lt.GetLinkToken())).Execute())
	// Issue 9.6: link_sessions with item_add_results conform too.
	if _, err := e.sim.CompleteLink(lt.GetLinkToken(), "ins_109508", ""); err != nil {
		t.Fatal(err)
	}
	must(api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(lt.GetLinkToken())).Execute())
	up := linkReq("u")
	up.SetAccessToken(at)
	ut, _, err := api.LinkTokenCreate(ctx).LinkTokenCreateRequest(*up).Execute()
	if err != nil {
		t.Fatal(err)
	}
	must(api.LinkTokenGet(ctx).LinkTokenGetRequest(*plaid.NewLinkTokenGetRequest(ut.GetLinkToken())).Execute())
	must(api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(plain)).Execute()) // webhook null
	must(api.TransactionsSync(ctx).TransactionsSyncRequest(*plaid.NewTransactionsSyncRequest(at)).Execute())
	wu := plaid.NewItemWebhookUpdateRequest(at)
	wu.SetWebhook(rcv.url)
	must(api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*wu).Execute())
	must(api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(e.currentKid(t))).Execute())
	rcv.waitCode(t, "WEBHOOK_UPDATE_ACKNOWLEDGED")
	must(api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()) // with status.last_webhook
	must(api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute())
	must(api.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute()) // with item.error
	for _, code := range []string{"SYNC_UPDATES_AVAILABLE", "DEFAULT_UPDATE", "NEW_ACCOUNTS_AVAILABLE", "PENDING_EXPIRATION", "PENDING_DISCONNECT", "USER_PERMISSION_REVOKED", "LOGIN_REPAIRED"} {
		must(api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, code)).Execute())
	}
	if _, err := e.sim.RotateKey(); err != nil {
		t.Fatal(err)
	}
	must(api.WebhookVerificationKeyGet(ctx).WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(jwtHeader(t, rcv.all()[0].Header.Get("Plaid-Verification")).Kid)).Execute()) // expired_at set

	// Errors (raw, so every error path is reachable).
	errs := []struct{ path, body string }{
		{"/link/token/create", `{"language":"en"}`},
		{"/link/token/create", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":"u"}}`},
		{"/link/token/create", `{"client_name":"x","language":"en","country_codes":["ZZ"],"user":{"client_user_id":"u"},"products":["transactions"]}`},
		{"/link/token/get", `{"link_token":"link-sandbox-nope"}`},
		{"/item/public_token/exchange", `{"public_token":"public-sandbox-nope"}`},
		{"/item/public_token/exchange", `{}`},
		{"/item/get", `{"access_token":"access-sandbox-nope"}`},
		{"/item/get", `{`},
		{"/item/webhook/update", `{"access_token":"access-sandbox-nope","webhook":"https://x"}`},
		{"/webhook_verification_key/get", `{"key_id":"nope"}`},
		{"/sandbox/public_token/create", `{"institution_id":"bank","initial_products":["transactions"]}`},
		{"/sandbox/public_token/create", `{"institution_id":"ins_1","initial_products":["balance"]}`},
		{"/sandbox/public_token/create", `{"institution_id":"ins_1","initial_products":["transactions"],"options":{"override_username":"user_bad"}}`},
		{"/sandbox/item/fire_webhook", `{"access_token":"` + at + `","webhook_code":"NOPE"}`},
		{"/sandbox/item/fire_webhook", `{"access_token":"` + plain + `","webhook_code":"DEFAULT_UPDATE"}`},
		{"/sandbox/item/reset_login", `{"access_token":"access-sandbox-nope"}`},
		{"/transactions/sync", `{"access_token":"` + at + `"}`}, // ITEM_LOGIN_REQUIRED again after the reset below
	}
	must(api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute())
	for _, x := range errs {
		if st, _, b := rawPost(t, e.ts.URL+x.path, x.body, credHeaders); st < 400 {
			t.Fatalf("%s %s: want an error, got %d %s", x.path, x.body, st, b)
		}
	}
	rawPost(t, e.ts.URL+"/item/get", `{"access_token":"x"}`, credNone) // INVALID_API_KEYS
	must(api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute())
	_, _, err = api.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(at)).Execute()
	if err == nil {
		t.Fatal("second item/remove succeeded")
	}

	// Validate everything the emulator wrote.
	seen := map[string]map[bool]int{}
	for _, ex := range e.wire.all() {
		if !slices.Contains(plaidPaths, ex.Path) {
			continue
		}
		conform(t, fmt.Sprintf("%s -> %d", ex.Path, ex.Status), responseSchema(t, ex.Path, ex.Status), ex.Body)
		if seen[ex.Path] == nil {
			seen[ex.Path] = map[bool]int{}
		}
		seen[ex.Path][ex.Status == 200]++
	}
	for _, p := range plaidPaths {
		if seen[p][true] == 0 || seen[p][false] == 0 {
			t.Errorf("%s: validated %d successes and %d errors; want both", p, seen[p][true], seen[p][false])
		}
	}
}

// webhookSchemas maps each webhook the emulator sends to its schema in
// components/schemas.
var webhookSchemas = map[string]string{
	"ERROR":                       "ItemErrorWebhook",
	"PENDING_EXPIRATION":          "PendingExpirationWebhook",
	"PENDING_DISCONNECT":          "PendingDisconnectWebhook",
	"USER_PERMISSION_REVOKED":     "UserPermissionRevokedWebhook",
	"WEBHOOK_UPDATE_ACKNOWLEDGED": "WebhookUpdateAcknowledgedWebhook",
	"LOGIN_REPAIRED":              "ItemLoginRepairedWebhook",
	"SYNC_UPDATES_AVAILABLE":      "SyncUpdatesAvailableWebhook",
	"DEFAULT_UPDATE":              "DefaultUpdateWebhook",
	"NEW_ACCOUNTS_AVAILABLE":      "NewAccountsAvailableWebhook",
}

var backticked = regexp.MustCompile("^`([A-Z_]+)`$")

// TestWebhooksConformToPlaidSpec produces every webhook the emulator can
// send and validates each body against its webhook schema; webhook_type and
// webhook_code must be the values the schema documents.
func TestWebhooksConformToPlaidSpec(t *testing.T) {
	t.Parallel()
	loadSpec(t)
	ctx := context.Background()
	e := newEnv(t, Options{})
	rcv := newReceiver(t, nil)
	at, _ := e.linkItem(t, newReceiver(t, nil).url) // replaced below
	wu := plaid.NewItemWebhookUpdateRequest(at)
	wu.SetWebhook(rcv.url)
	if _, _, err := e.api.ItemWebhookUpdate(ctx).ItemWebhookUpdateRequest(*wu).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.api.SandboxItemResetLogin(ctx).SandboxItemResetLoginRequest(*plaid.NewSandboxItemResetLoginRequest(at)).Execute(); err != nil {
		t.Fatal(err)
	}
	for code := range webhookSchemas {
		if code == "ERROR" || code == "WEBHOOK_UPDATE_ACKNOWLEDGED" {
			continue
		}
		if _, _, err := e.api.SandboxItemFireWebhook(ctx).SandboxItemFireWebhookRequest(*plaid.NewSandboxItemFireWebhookRequest(at, code)).Execute(); err != nil {
			t.Fatalf("fire %s: %v", code, err)
		}
	}
	hooks := rcv.waitN(t, len(webhookSchemas))
	got := map[string]int{}
	for _, h := range hooks {
		name, ok := webhookSchemas[h.Code]
		if !ok {
			t.Errorf("unexpected webhook %s", h.Body)
			continue
		}
		got[h.Code]++
		s := componentSchema(t, name)
		conform(t, "webhook "+h.Code, s, h.Body)
		m := jsonObj(t, h.Body)
		for _, f := range []string{"webhook_type", "webhook_code"} {
			want := backticked.FindStringSubmatch(s.Properties[f].Value.Description)
			if want == nil {
				t.Fatalf("%s.%s: description %q names no value", name, f, s.Properties[f].Value.Description)
			}
			if m[f] != want[1] {
				t.Errorf("webhook %s: %s = %v, schema %s says %s", h.Code, f, m[f], name, want[1])
			}
		}
	}
	for code := range webhookSchemas {
		if got[code] != 1 {
			t.Errorf("%s: %d webhooks, want 1", code, got[code])
		}
	}
}

// The checker must be right for a green run to mean something: Plaid's own
// examples pass it, and invented, missing or mistyped fields are caught.
func TestConformanceCheckerSelfTest(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	t.Run("Plaid's examples pass", func(t *testing.T) {
		t.Parallel()
		n := 0
		for _, p := range plaidPaths {
			mt := doc.Paths.Value(p).Post.Responses.Status(200).Value.Content.Get("application/json")
			for name, ex := range mt.Examples {
				b, _ := json.Marshal(ex.Value.Value)
				conform(t, p+" example "+name, mt.Schema.Value, b)
				n++
			}
		}
		for code, name := range webhookSchemas {
			exs, _ := componentSchema(t, name).Extensions["x-examples"].(map[string]any)
			for en, ex := range exs {
				b, _ := json.Marshal(ex)
				conform(t, code+" x-example "+en, componentSchema(t, name), b)
				n++
			}
		}
		if n < len(plaidPaths)+len(webhookSchemas) {
			t.Errorf("only %d examples checked", n)
		}
	})

	itemGet := responseSchema(t, "/item/get", 200)
	good := func() map[string]any {
		return map[string]any{
			"request_id": "m8MDnv9okwxFNBV",
			"item": map[string]any{
				"item_id": "Ed6bjNrDLJfGvZWwnkQlfxwoNz54B5C97ejBr", "institution_id": "ins_109508", "webhook": nil,
				"error":              map[string]any{"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "m", "display_message": nil},
				"available_products": []any{"balance"}, "billed_products": []any{"transactions"},
				"consent_expiration_time": nil, "update_type": "background", "created_at": "2019-01-22T04:32:00Z",
			},
			"status": map[string]any{"last_webhook": map[string]any{"sent_at": "2019-02-15T15:53:00Z", "code_sent": "DEFAULT_UPDATE"}},
		}
	}
	item := func(m map[string]any) map[string]any { return m["item"].(map[string]any) }
	tests := []struct {
		name      string
		mutate    func(m map[string]any)
		undecl    []string // want exactly these from the strict walk
		schemaErr bool     // want VisitJSON to fail
	}{
		{name: "valid", mutate: func(map[string]any) {}},
		{name: "top-level invention", mutate: func(m map[string]any) { m["bogus"] = 1 }, undecl: []string{"$.bogus"}},
		{name: "nested invention", mutate: func(m map[string]any) { item(m)["institution_logo"] = "x" }, undecl: []string{"$.item.institution_logo"}},
		{name: "invention inside a $ref'd nullable object", mutate: func(m map[string]any) { item(m)["error"].(map[string]any)["hint"] = "x" }, undecl: []string{"$.item.error.hint"}},
		{name: "invention two levels down", mutate: func(m map[string]any) {
			m["status"].(map[string]any)["last_webhook"].(map[string]any)["attempts"] = 3
		}, undecl: []string{"$.status.last_webhook.attempts"}},
		{name: "missing required", mutate: func(m map[string]any) { delete(item(m), "update_type") }, schemaErr: true},
		{name: "missing required nullable", mutate: func(m map[string]any) { delete(item(m), "webhook") }, schemaErr: true},
		{name: "wrong type", mutate: func(m map[string]any) { item(m)["available_products"] = "balance" }, schemaErr: true},
		{name: "bad enum", mutate: func(m map[string]any) { item(m)["error"].(map[string]any)["error_type"] = "OOPS" }, schemaErr: true},
		{name: "bad date-time", mutate: func(m map[string]any) { item(m)["created_at"] = "2019-01-22 04:32" }, schemaErr: true},
		{name: "null where not nullable", mutate: func(m map[string]any) { item(m)["item_id"] = nil }, schemaErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := good()
			tt.mutate(m)
			b, _ := json.Marshal(m)
			var v any
			_ = json.Unmarshal(b, &v)
			if err := itemGet.VisitJSON(v, visitOpts...); (err != nil) != tt.schemaErr {
				t.Errorf("VisitJSON error = %v, want error %v", err, tt.schemaErr)
			}
			if got := undeclared("$", v, itemGet); !slices.Equal(got, tt.undecl) {
				t.Errorf("undeclared = %v, want %v", got, tt.undecl)
			}
		})
	}
	t.Run("arrays and allOf", func(t *testing.T) {
		t.Parallel()
		// TransactionsSyncResponse.accounts is an array of AccountBase.
		s := responseSchema(t, "/transactions/sync", 200)
		v := map[string]any{"accounts": []any{map[string]any{"account_id": "a", "nickname": "x"}}}
		if got := undeclared("$", v, s); !slices.Equal(got, []string{"$.accounts[0].nickname"}) {
			t.Errorf("array items: undeclared = %v", got)
		}
		// A schema composed with allOf declares the union of its parts.
		comp := &openapi3.Schema{AllOf: openapi3.SchemaRefs{
			{Value: &openapi3.Schema{Properties: openapi3.Schemas{"a": {Value: &openapi3.Schema{}}}}},
			{Value: &openapi3.Schema{Properties: openapi3.Schemas{"b": {Value: &openapi3.Schema{}}}}},
		}}
		if got := undeclared("$", map[string]any{"a": 1, "b": 2, "c": 3}, comp); !slices.Equal(got, []string{"$.c"}) {
			t.Errorf("allOf: undeclared = %v", got)
		}
	})
}
