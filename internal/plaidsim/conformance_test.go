package plaidsim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// Plaid's own OpenAPI spec (testdata/openapi.yml, ~3 MB), loaded once.
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
		t.Fatalf("load spec: %v", specErr)
	}
	return spec
}

// conform checks v against s: the library for types, formats and required
// fields; strict() for properties the schema does not declare (Plaid's spec
// allows additional properties almost everywhere, so the library alone would
// not notice an invented field).
func conform(t testing.TB, what string, s *openapi3.Schema, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", what, err, body)
		return
	}
	if err := s.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		t.Errorf("%s: does not match Plaid's schema: %v\n%s", what, err, body)
	}
	if errs := strict("$", v, s); len(errs) > 0 {
		t.Errorf("%s: fields Plaid's schema does not declare: %s\n%s", what, strings.Join(errs, "; "), body)
	}
}

// strict walks v and reports every object key that no property of the
// schema (through $ref, allOf, oneOf/anyOf, items) declares.
func strict(path string, v any, s *openapi3.Schema) []string {
	if s == nil || v == nil {
		return nil
	}
	if len(s.OneOf)+len(s.AnyOf) > 0 {
		var best []string
		for i, alt := range append(append([]*openapi3.SchemaRef{}, s.OneOf...), s.AnyOf...) {
			errs := strict(path, v, alt.Value)
			if len(errs) == 0 {
				return nil
			}
			if i == 0 || len(errs) < len(best) {
				best = errs
			}
		}
		return best
	}
	switch x := v.(type) {
	case map[string]any:
		props := map[string]*openapi3.Schema{}
		collectProps(s, props)
		var errs []string
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := props[k]
			if !ok {
				if len(props) == 0 && s.AdditionalProperties.Schema != nil {
					errs = append(errs, strict(path+"."+k, x[k], s.AdditionalProperties.Schema.Value)...)
					continue
				}
				errs = append(errs, path+"."+k)
				continue
			}
			errs = append(errs, strict(path+"."+k, x[k], ps)...)
		}
		return errs
	case []any:
		var items *openapi3.Schema
		if s.Items != nil {
			items = s.Items.Value
		}
		for _, a := range s.AllOf {
			if items == nil && a.Value.Items != nil {
				items = a.Value.Items.Value
			}
		}
		var errs []string
		for i, e := range x {
			errs = append(errs, strict(fmt.Sprintf("%s[%d]", path, i), e, items)...)
		}
		return errs
	}
	return nil
}

func collectProps(s *openapi3.Schema, into map[string]*openapi3.Schema) {
	for k, p := range s.Properties {
		into[k] = p.Value
	}
	for _, a := range s.AllOf {
		collectProps(a.Value, into)
	}
}

func responseSchema(t testing.TB, path string, status int) *openapi3.Schema {
	t.Helper()
	doc := loadSpec(t)
	if status != 200 {
		return doc.Components.Schemas["PlaidError"].Value
	}
	item := doc.Paths.Find(path)
	if item == nil || item.Post == nil {
		t.Fatalf("spec has no POST %s", path)
	}
	r := item.Post.Responses.Status(200)
	if r == nil {
		t.Fatalf("spec has no 200 for %s", path)
	}
	return r.Value.Content.Get("application/json").Schema.Value
}

// TestResponsesConformToPlaidSpec drives every endpoint (successes and
// errors) and validates each body against its schema in Plaid's spec.
func TestResponsesConformToPlaidSpec(t *testing.T) {
	e := newEnv(t, Options{})
	hooks := newHookSink(t)
	post := func(path, body string) (int, []byte) {
		t.Helper()
		st, b := rawPost(t, e.ts.URL+path, body, true)
		conform(t, fmt.Sprintf("%s %d", path, st), responseSchema(t, path, st), b)
		return st, b
	}
	field := func(b []byte, k string) string {
		var m map[string]any
		json.Unmarshal(b, &m)
		s, _ := m[k].(string)
		return s
	}
	_, b := post("/sandbox/public_token/create", `{"institution_id":"ins_109508","initial_products":["transactions"],"options":{"webhook":"`+hooks.url+`"}}`)
	_, b = post("/item/public_token/exchange", `{"public_token":"`+field(b, "public_token")+`"}`)
	at := field(b, "access_token")
	_, b = post("/link/token/create", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":"u"},"products":["transactions"],"webhook":"`+hooks.url+`"}`)
	post("/link/token/get", `{"link_token":"`+field(b, "link_token")+`"}`)
	post("/link/token/create", `{"client_name":"x","language":"en","country_codes":["US"],"user":{"client_user_id":"u"},"access_token":"`+at+`"}`)
	post("/item/get", `{"access_token":"`+at+`"}`)
	post("/item/webhook/update", `{"access_token":"`+at+`","webhook":"`+hooks.url+`"}`)
	post("/webhook_verification_key/get", `{"key_id":"`+currentKid(t, e)+`"}`)
	post("/sandbox/item/reset_login", `{"access_token":"`+at+`"}`)
	post("/item/get", `{"access_token":"`+at+`"}`) // with item.error set
	for _, code := range []string{"PENDING_EXPIRATION", "PENDING_DISCONNECT", "USER_PERMISSION_REVOKED", "LOGIN_REPAIRED", "SYNC_UPDATES_AVAILABLE", "DEFAULT_UPDATE"} {
		post("/sandbox/item/fire_webhook", `{"access_token":"`+at+`","webhook_code":"`+code+`"}`)
	}
	// Errors.
	post("/item/public_token/exchange", `{"public_token":"public-sandbox-nope"}`)
	post("/item/get", `{"access_token":"access-sandbox-nope"}`)
	post("/link/token/create", `{"language":"en"}`)
	post("/webhook_verification_key/get", `{"key_id":"nope"}`)
	post("/sandbox/item/fire_webhook", `{"access_token":"`+at+`","webhook_code":"NOT_A_CODE"}`)
	post("/item/remove", `{"access_token":"`+at+`"}`)

	// Every webhook body the emulator sent matches its schema.
	want := map[string]string{
		"ERROR": "ItemErrorWebhook", "PENDING_EXPIRATION": "PendingExpirationWebhook", "PENDING_DISCONNECT": "PendingDisconnectWebhook",
		"USER_PERMISSION_REVOKED": "UserPermissionRevokedWebhook", "LOGIN_REPAIRED": "ItemLoginRepairedWebhook",
		"WEBHOOK_UPDATE_ACKNOWLEDGED": "WebhookUpdateAcknowledgedWebhook", "SYNC_UPDATES_AVAILABLE": "SyncUpdatesAvailableWebhook",
		"DEFAULT_UPDATE": "DefaultUpdateWebhook",
	}
	got := hooks.waitFor(t, len(want))
	for code, name := range want {
		body, ok := got[code]
		if !ok {
			t.Errorf("no %s webhook delivered", code)
			continue
		}
		conform(t, "webhook "+code, loadSpec(t).Components.Schemas[name].Value, body)
	}
}

// hookSink is a local webhook receiver keyed by webhook_code.
type hookSink struct {
	url  string
	mu   sync.Mutex
	got  map[string][]byte
	hdrs []http.Header
}

func newHookSink(t testing.TB) *hookSink {
	h := &hookSink{got: map[string][]byte{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m struct {
			WebhookCode string `json:"webhook_code"`
		}
		json.Unmarshal(b, &m)
		h.mu.Lock()
		h.got[m.WebhookCode] = b
		h.hdrs = append(h.hdrs, r.Header.Clone())
		h.mu.Unlock()
	}))
	t.Cleanup(ts.Close)
	h.url = ts.URL + "/hook"
	return h
}

func (h *hookSink) waitFor(t testing.TB, n int) map[string][]byte {
	t.Helper()
	for range 500 {
		h.mu.Lock()
		if len(h.got) >= n {
			out := map[string][]byte{}
			for k, v := range h.got {
				out[k] = v
			}
			h.mu.Unlock()
			return out
		}
		h.mu.Unlock()
		sleepShort()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got
}

var _ = context.Background

// The checker itself catches invented and missing fields (so a green
// conformance run means something).
func TestConformanceCheckerCatchesDrift(t *testing.T) {
	s := responseSchema(t, "/item/get", 200)
	if errs := strict("$", map[string]any{"request_id": "r", "item": map[string]any{"item_id": "i", "bogus": 1}}, s); len(errs) != 1 || errs[0] != "$.item.bogus" {
		t.Errorf("strict missed an invented field: %v", errs)
	}
	if err := s.VisitJSON(map[string]any{"request_id": "r"}, openapi3.MultiErrors()); err == nil {
		t.Error("a body without the required item passed the schema")
	}
}
