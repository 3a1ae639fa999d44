package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store"
)

const (
	simClientID = "test-client"
	simSecret   = "test-secret"
	testKeyring = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

// testEnv is a real proxy on loopback in front of a real Badger store and the
// Plaid emulator, talked to with net/http (a second HTTP implementation).
type testEnv struct {
	t     testing.TB
	sim   *plaidsim.Server
	simTS *httptest.Server
	db    *store.DB
	dir   string
	srv   *Server
	base  string // http://127.0.0.1:PORT
	addr  string
	done  chan error
}

type envConfig struct {
	noKey      bool
	plaidURL   string // overrides the emulator (dead Plaid)
	dir        string // reuse a data dir
	sim        *plaidsim.Server
	upstream   string
	wrapLn     func(net.Listener) net.Listener // e.g. Certs.Listener (issue 13)
	optsFn     func(*Options)                  // last word on the Options (issue 13)
	forward    []Destination
	tenantsFn  func(base, plaidURL string) []Tenant
	webhookOpt WebhookOptions
	logTo      io.Writer // default: discarded
	memTable   int64     // store.Options.MemTableSize; zero: the store's default
	// exchangeFault is Options.exchangeFault (Issue 9.7 crash tests).
	exchangeFault func(stage string) error
	maxBody       int // Options.MaxBodyBytes; zero means the default
	// store, when set, opens the backend instead of Badger in dir (issue 11:
	// PostgreSQL); the test closes it. e.db is then nil.
	store func(t testing.TB, kr *store.Keyring) Store
	// options, when set, adjusts the server Options (issue 13 limits).
	options func(*Options)
}

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func apiKeys(t testing.TB, m map[string]string) *APIKeys {
	t.Helper()
	d := map[string]string{}
	for k, u := range m {
		d[sha(k)] = u
	}
	a, err := NewAPIKeys(d)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newSim(t testing.TB) (*plaidsim.Server, *httptest.Server) {
	t.Helper()
	sim, err := plaidsim.New(plaidsim.Options{ClientID: simClientID, Secret: simSecret, TimeScale: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(sim)
	t.Cleanup(func() { ts.Close(); sim.Close() })
	return sim, ts
}

func startEnv(t testing.TB, c envConfig) *testEnv {
	t.Helper()
	e := &testEnv{t: t, sim: c.sim, dir: c.dir}
	if e.sim == nil {
		e.sim, e.simTS = newSim(t)
	}
	plaidURL := c.plaidURL
	if plaidURL == "" && e.simTS != nil {
		plaidURL = e.simTS.URL
	}
	if e.dir == "" {
		e.dir = t.TempDir()
	}
	var kr *store.Keyring
	if !c.noKey {
		var err error
		if kr, err = store.ParseKeyring(testKeyring); err != nil {
			t.Fatal(err)
		}
	}
	var db Store
	if c.store != nil {
		db = c.store(t, kr)
	} else {
		bdb, err := store.Open(store.Options{Dir: e.dir, Keyring: kr, MemTableSize: c.memTable})
		if err != nil {
			t.Fatal(err)
		}
		e.db, db = bdb, bdb
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.base = "http://" + e.addr
	var tenants []Tenant
	if c.tenantsFn != nil {
		tenants = c.tenantsFn(e.base, plaidURL)
	} else {
		tenants = defaultTenants(t, e.addr, plaidURL, c.upstream, c.forward)
	}
	wo := c.webhookOpt
	if wo.Workers == 0 {
		wo.Workers = 2
	}
	if wo.Poll == 0 {
		wo.Poll = 20 * time.Millisecond
	}
	if wo.Backoff == 0 {
		wo.Backoff = 20 * time.Millisecond
	}
	logTo := c.logTo
	if logTo == nil {
		logTo = io.Discard
	}
	opts := Options{
		Tenants: tenants, Store: db, IdleTimeout: time.Second, PlaidTimeout: 5 * time.Second, MaxBodyBytes: c.maxBody,
		Logger: slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})), Webhooks: wo,
		exchangeFault: c.exchangeFault,
	}
	if c.optsFn != nil {
		c.optsFn(&opts)
	}
	if c.options != nil {
		c.options(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.done = make(chan error, 1)
	var sln net.Listener = ln
	if c.wrapLn != nil {
		sln = c.wrapLn(ln)
	}
	go func() { e.done <- srv.Serve(sln) }()
	t.Cleanup(e.stop)
	return e
}

// stop shuts the proxy down and closes the store; safe to call twice.
func (e *testEnv) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Tests that send through http.DefaultClient can leave it holding a
	// connection it dialled but never used (a dial that lost the race to a
	// connection freed meanwhile). fasthttp counts a connection without a
	// request as idle only 5 s after it opened, so Shutdown would wait for
	// it as long as this deadline: close the client's idle connections
	// first (other tests' requests redial).
	http.DefaultClient.CloseIdleConnections()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	if err := <-e.done; err != nil {
		e.t.Errorf("Serve: %v", err)
	}
	if e.db != nil {
		if err := e.db.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			e.t.Errorf("store Close: %v", err)
		}
	}
	e.srv = nil
}

// defaultTenants: "t1" (alice, bob) answers t1.test and 127.0.0.1 (so the
// emulator's webhooks reach it); "t2" (carol) answers t2.test and localhost.
func defaultTenants(t testing.TB, addr, plaidURL, upstream string, fwd []Destination) []Tenant {
	port := addr[strings.LastIndexByte(addr, ':'):]
	p := func(host string) PlaidOptions {
		return PlaidOptions{
			BaseURL: plaidURL, ClientID: simClientID, Secret: simSecret, ClientName: "Safeclose Test",
			Products: []string{"transactions"}, CountryCodes: []string{"US"}, Language: "en",
			WebhookURL: "http://" + host + port + pathWebhook,
		}
	}
	return []Tenant{
		{Name: "t1", Hosts: []string{"t1.test", "127.0.0.1"}, Plaid: p("127.0.0.1"), Upstream: upstream,
			Auth: apiKeys(t, map[string]string{"alice-key": "alice", "bob-key": "bob"}), Forward: fwd},
		{Name: "t2", Hosts: []string{"t2.test", "localhost"}, Plaid: p("localhost"), Upstream: upstream,
			Auth: apiKeys(t, map[string]string{"carol-key": "carol"})},
	}
}

type resp struct {
	status int
	body   []byte
	hdr    http.Header
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return m
}

func (r resp) errCode(t testing.TB) string {
	t.Helper()
	m := r.json(t)
	e, _ := m["error"].(map[string]any)
	if e == nil {
		t.Fatalf("body %s has no error object", r.body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without message: %s", r.body)
	}
	c, _ := e["code"].(string)
	return c
}

// do sends a request with Host set to host and an optional bearer key.
func (e *testEnv) do(method, host, path, key string, body []byte, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if strings.Contains(string(b), "access-sandbox") || strings.Contains(string(b), "access-production") {
		e.t.Fatalf("%s %s leaked an access token: %s", method, path, b)
	}
	return resp{status: res.StatusCode, body: b, hdr: res.Header}
}

// link runs the whole Link flow for a user and returns the exchange answer.
func (e *testEnv) link(host, key, institution string) resp {
	e.t.Helper()
	r := e.do("POST", host, pathLinkToken, key, nil)
	if r.status != 200 {
		e.t.Fatalf("link-token = %d %s", r.status, r.body)
	}
	tok, _ := r.json(e.t)["link_token"].(string)
	pub, err := e.sim.CompleteLink(tok, institution, "user_good")
	if err != nil {
		e.t.Fatalf("CompleteLink: %v", err)
	}
	return e.do("POST", host, pathExchange, key, []byte(`{"public_token":"`+pub+`"}`))
}

// eventually polls cond for up to 10s (bounded), failing with msg.
func eventually(t testing.TB, msg string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting: %s", msg)
}
