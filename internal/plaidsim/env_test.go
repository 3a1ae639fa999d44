package plaidsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plaid/plaid-go/v29/plaid"
)

// Shared test scaffolding: an emulator behind httptest on loopback, a plaid-go
// v29 client pointed at it, an injectable clock, a log of every response the
// emulator wrote, and a local webhook receiver.

const (
	testClientID = "plaidsim-test-client"
	testSecret   = "plaidsim-test-secret"
	testInst     = "ins_109508"
	waitLimit    = 15 * time.Second // upper bound of every polling loop
)

var (
	requestIDRE   = regexp.MustCompile(`^[A-Za-z0-9]{15}$`)
	uuidRE        = `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	linkTokenRE   = regexp.MustCompile(`^link-sandbox-` + uuidRE + `$`)
	publicTokenRE = regexp.MustCompile(`^public-sandbox-` + uuidRE + `$`)
	accessTokenRE = regexp.MustCompile(`^access-sandbox-` + uuidRE + `$`)
	itemIDRE      = regexp.MustCompile(`^[A-Za-z0-9]{37}$`)
	kidRE         = regexp.MustCompile(`^` + uuidRE + `$`)
)

// clock is an injectable clock that only moves when told to.
type clock struct{ ns atomic.Int64 }

var clockStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newClock() *clock {
	c := &clock{}
	c.ns.Store(clockStart.UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// exchange is one HTTP response written by the emulator.
type exchange struct {
	Method, Path string
	Status       int
	Header       http.Header
	Body         []byte
}

// wireLog wraps the emulator and records every response it writes.
type wireLog struct {
	h  http.Handler
	mu sync.Mutex
	ex []exchange
}

type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
	c.ResponseWriter.WriteHeader(s)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

func (l *wireLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &captureWriter{ResponseWriter: w}
	l.h.ServeHTTP(cw, r)
	l.mu.Lock()
	l.ex = append(l.ex, exchange{Method: r.Method, Path: r.URL.Path, Status: cw.status, Header: cw.Header().Clone(), Body: cw.buf.Bytes()})
	l.mu.Unlock()
}

func (l *wireLog) all() []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]exchange(nil), l.ex...)
}

// checkWire asserts what every Plaid endpoint response must carry: exactly
// Content-Type application/json and a JSON object body with a 15-character
// alphanumeric request_id (success and error alike).
func checkWire(t testing.TB, ex exchange) {
	t.Helper()
	if strings.HasPrefix(ex.Path, "/__emu/") {
		return
	}
	if ct := ex.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s -> %d: Content-Type %q, want application/json", ex.Method, ex.Path, ex.Status, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(ex.Body, &m); err != nil {
		t.Errorf("%s %s -> %d: body is not a JSON object: %v: %s", ex.Method, ex.Path, ex.Status, err, ex.Body)
		return
	}
	if id, _ := m["request_id"].(string); !requestIDRE.MatchString(id) {
		t.Errorf("%s %s -> %d: request_id %q is not 15 alphanumerics: %s", ex.Method, ex.Path, ex.Status, id, ex.Body)
	}
}

type env struct {
	sim  *Server
	ts   *httptest.Server
	api  *plaid.PlaidApiService
	clk  *clock
	wire *wireLog
}

// newEnv starts an emulator with o (credentials, clock and a tiny TimeScale
// filled in when unset). At cleanup every response the emulator wrote during
// the test is checked with checkWire.
func newEnv(t testing.TB, o Options) *env {
	t.Helper()
	e := &env{clk: newClock()}
	if o.ClientID == "" {
		o.ClientID, o.Secret = testClientID, testSecret
	}
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
	e.wire = &wireLog{h: sim}
	e.ts = httptest.NewServer(e.wire)
	t.Cleanup(func() {
		e.ts.Close()
		if err := sim.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		n := 0
		for _, ex := range e.wire.all() {
			if !strings.HasPrefix(ex.Path, "/__emu/") {
				checkWire(t, ex)
				n++
			}
		}
		if n == 0 && !t.Failed() {
			t.Log("no Plaid endpoint was called")
		}
	})
	e.api = newClient(e.ts.URL, o.ClientID, o.Secret)
	return e
}

// newClient is plaid-go v29 configured the way Safeclose configures it.
func newClient(url, id, secret string) *plaid.PlaidApiService {
	cfg := plaid.NewConfiguration()
	cfg.Servers = plaid.ServerConfigurations{{URL: url}}
	cfg.AddDefaultHeader("PLAID-CLIENT-ID", id)
	cfg.AddDefaultHeader("PLAID-SECRET", secret)
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	return plaid.NewAPIClient(cfg).PlaidApi
}

// asPlaidError decodes a plaid-go error into Plaid's error object.
func asPlaidError(err error) (plaid.PlaidError, bool) {
	var g plaid.GenericOpenAPIError
	if err == nil || !errors.As(err, &g) {
		return plaid.PlaidError{}, false
	}
	pe, perr := plaid.ToPlaidError(g)
	return pe, perr == nil
}

// wantPlaidErr asserts that a plaid-go call failed with Plaid's error object
// carrying status, error_type and error_code, an error_message, a
// request_id, and a display_message field (null for these errors).
func wantPlaidErr(t testing.TB, err error, hr *http.Response, status int, typ, code string) plaid.PlaidError {
	t.Helper()
	pe, ok := asPlaidError(err)
	if !ok {
		t.Fatalf("want Plaid error %s/%s, got %v", typ, code, err)
	}
	got := 0
	if hr != nil {
		got = hr.StatusCode
	}
	if got != status || string(pe.ErrorType) != typ || pe.ErrorCode != code {
		t.Fatalf("error = HTTP %d %s/%s (%q); want HTTP %d %s/%s", got, pe.ErrorType, pe.ErrorCode, pe.ErrorMessage, status, typ, code)
	}
	if pe.ErrorMessage == "" || !requestIDRE.MatchString(pe.GetRequestId()) {
		t.Errorf("error %s: message %q request_id %q", code, pe.ErrorMessage, pe.GetRequestId())
	}
	if pe.DisplayMessage.Get() != nil {
		t.Errorf("error %s: display_message = %q, want null", code, *pe.DisplayMessage.Get())
	}
	return pe
}

// credStyle says where rawPost puts the credentials.
type credStyle int

const (
	credHeaders credStyle = iota
	credBody
	credNone
)

// rawPost posts a JSON body with net/http and returns status, headers and body.
func rawPost(t testing.TB, url, body string, cs credStyle) (int, http.Header, []byte) {
	t.Helper()
	if cs == credBody {
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("rawPost: %v", err)
		}
		m["client_id"], m["secret"] = testClientID, testSecret
		b, _ := json.Marshal(m)
		body = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cs == credHeaders {
		req.Header.Set("PLAID-CLIENT-ID", testClientID)
		req.Header.Set("PLAID-SECRET", testSecret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func jsonObj(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func transactions() []plaid.Products { return []plaid.Products{plaid.PRODUCTS_TRANSACTIONS} }

func linkReq(user string) *plaid.LinkTokenCreateRequest {
	return plaid.NewLinkTokenCreateRequest("Safeclose", "en", []plaid.CountryCode{plaid.COUNTRYCODE_US},
		plaid.LinkTokenCreateRequestUser{ClientUserId: user})
}

// newPublicToken calls /sandbox/public_token/create (webhook optional).
func (e *env) newPublicToken(ctx context.Context, webhook string, ps []plaid.Products) (string, error) {
	req := plaid.NewSandboxPublicTokenCreateRequest(testInst, ps)
	if webhook != "" {
		req.SetOptions(plaid.SandboxPublicTokenCreateRequestOptions{Webhook: &webhook})
	}
	res, _, err := e.api.SandboxPublicTokenCreate(ctx).SandboxPublicTokenCreateRequest(*req).Execute()
	return res.GetPublicToken(), err
}

// linkItem creates an item with the transactions product through
// /sandbox/public_token/create and /item/public_token/exchange.
func (e *env) linkItem(t testing.TB, webhook string) (accessToken, itemID string) {
	t.Helper()
	return e.linkItemWith(t, webhook, transactions())
}

func (e *env) linkItemWith(t testing.TB, webhook string, ps []plaid.Products) (accessToken, itemID string) {
	t.Helper()
	ctx := context.Background()
	pt, err := e.newPublicToken(ctx, webhook, ps)
	if err != nil {
		t.Fatalf("sandbox/public_token/create: %v", err)
	}
	ex, _, err := e.api.ItemPublicTokenExchange(ctx).ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(pt)).Execute()
	if err != nil {
		t.Fatalf("item/public_token/exchange: %v", err)
	}
	return ex.GetAccessToken(), ex.GetItemId()
}

// currentKid reads the kid the emulator signs with now.
func (e *env) currentKid(t testing.TB) string {
	t.Helper()
	j, err := e.sim.Sign([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	return jwtHeader(t, j).Kid
}

type jwtHdr struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type jwtClaims struct {
	IAT  int64  `json:"iat"`
	Hash string `json:"request_body_sha256"`
}

// jwtHeader and jwtPayload decode a compact JWT's parts without verifying.
func jwtHeader(t testing.TB, jwt string) jwtHdr {
	t.Helper()
	var h jwtHdr
	jwtPart(t, jwt, 0, &h)
	return h
}

func jwtPayload(t testing.TB, jwt string) jwtClaims {
	t.Helper()
	var c jwtClaims
	jwtPart(t, jwt, 1, &c)
	return c
}

func jwtPart(t testing.TB, jwt string, i int, v any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("JWS part %d: %v", i, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("JWS part %d: %v: %s", i, err, b)
	}
}

// hook is one webhook request as the receiver got it.
type hook struct {
	Body   []byte
	Header http.Header
	At     time.Time // receiver's wall clock (monotonic)
	Code   string    // webhook_code from the body
	Status int       // what the receiver answered
}

// receiver is a local webhook endpoint. respond picks the status for the
// n-th request (1-based); nil means always 200.
type receiver struct {
	url     string
	respond func(n int, w http.ResponseWriter) int
	mu      sync.Mutex
	hooks   []hook
	notify  chan struct{}
}

func newReceiver(t testing.TB, respond func(n int, w http.ResponseWriter) int) *receiver {
	t.Helper()
	r := &receiver{respond: respond, notify: make(chan struct{}, 1)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var m struct {
			Code string `json:"webhook_code"`
		}
		_ = json.Unmarshal(b, &m)
		r.mu.Lock()
		n := len(r.hooks) + 1
		st := http.StatusOK
		if r.respond != nil {
			st = r.respond(n, w)
		}
		r.hooks = append(r.hooks, hook{Body: b, Header: req.Header.Clone(), At: time.Now(), Code: m.Code, Status: st})
		r.mu.Unlock()
		w.WriteHeader(st)
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(ts.Close)
	r.url = ts.URL + "/api/webhooks/plaid"
	return r
}

func (r *receiver) all() []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hook(nil), r.hooks...)
}

// waitFor polls (bounded by waitLimit, woken by each delivery) until ok
// holds for the hooks received so far, and returns them.
func (r *receiver) waitFor(t testing.TB, what string, ok func([]hook) bool) []hook {
	t.Helper()
	return r.waitWithin(t, waitLimit, what, ok)
}

// waitWithin is waitFor with its own bound.
func (r *receiver) waitWithin(t testing.TB, limit time.Duration, what string, ok func([]hook) bool) []hook {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		hs := r.all()
		if ok(hs) {
			return hs
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; got %d webhooks", limit, what, len(hs))
		}
	}
}

// waitN waits for at least n webhooks.
func (r *receiver) waitN(t testing.TB, n int) []hook {
	t.Helper()
	return r.waitFor(t, "webhooks", func(hs []hook) bool { return len(hs) >= n })
}

// waitCode waits for the first webhook with webhook_code code.
func (r *receiver) waitCode(t testing.TB, code string) hook {
	t.Helper()
	var h hook
	r.waitFor(t, code+" webhook", func(hs []hook) bool {
		for _, x := range hs {
			if x.Code == code {
				h = x
				return true
			}
		}
		return false
	})
	return h
}

// waitDeliveries polls the emulator's delivery log (bounded by waitLimit)
// until ok holds, and returns it.
func waitDeliveries(t testing.TB, sim *Server, what string, ok func([]Delivery) bool) []Delivery {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ds := sim.Deliveries()
		if ok(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; delivery log has %d entries", waitLimit, what, len(ds))
		}
		time.Sleep(2 * time.Millisecond)
	}
}
