package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	plaid "github.com/plaid/plaid-go/v29/plaid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/safeclose/safeclose/store"
)

// simAPI is the real plaid-go client pointed at the test's emulator.
func (e *testEnv) simAPI() *plaid.PlaidApiService {
	cfg := plaid.NewConfiguration()
	cfg.AddDefaultHeader("PLAID-CLIENT-ID", simClientID)
	cfg.AddDefaultHeader("PLAID-SECRET", simSecret)
	cfg.UseEnvironment(plaid.Environment(e.simTS.URL))
	return plaid.NewAPIClient(cfg).PlaidApi
}

func (e *testEnv) linkToken(host, key, body string) string {
	e.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r := e.do("POST", host, pathLinkToken, key, b)
	if r.status != 200 {
		e.t.Fatalf("link-token = %d %s", r.status, r.body)
	}
	tok, _ := r.json(e.t)["link_token"].(string)
	return tok
}

func (e *testEnv) exchangeBody(publicToken, linkToken string) []byte {
	if linkToken == "" {
		return []byte(`{"public_token":"` + publicToken + `"}`)
	}
	return []byte(`{"public_token":"` + publicToken + `","link_token":"` + linkToken + `"}`)
}

// Issue 9.5: exchanging the public token of an item the caller already
// holds (an update-mode onSuccess the app exchanges) is an idempotent
// success, and the item stays alive at Plaid.
func TestExchangeOwnItemAgainIsIdempotent(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	itemID, _ := r.json(t)["item_id"].(string)
	at, err := e.db.AccessToken("t1", "alice", itemID)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := e.db.Item("t1", itemID)

	for _, withLink := range []bool{false, true} {
		ut := e.linkToken("t1.test", "alice-key", `{"item_id":"`+itemID+`"}`)
		pub, err := e.sim.CompleteLink(ut, "", "")
		if err != nil {
			t.Fatal(err)
		}
		lt := ""
		if withLink {
			lt = ut
		}
		r = e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt))
		m := r.json(t)
		if r.status != 200 || m["item_id"] != itemID || m["persisted"] != true || m["institution_id"] != "ins_109508" {
			t.Fatalf("update-mode exchange (link_token %v) = %d %s, want 200 same item persisted", withLink, r.status, r.body)
		}
	}
	if ids := e.sim.ItemIDs(); !slices.Equal(ids, []string{itemID}) {
		t.Errorf("items at Plaid = %v, want [%s] (the user's item must not be removed)", ids, itemID)
	}
	if _, _, err := e.simAPI().ItemGet(t.Context()).ItemGetRequest(*plaid.NewItemGetRequest(at)).Execute(); err != nil {
		t.Errorf("item/get with the stored token: %v", err)
	}
	items, _ := e.db.Items("t1", "alice")
	if len(items) != 1 || !items[0].CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("items = %+v, want the one item with its created_at kept", items)
	}
}

// Issue 9.5: a different new item at an institution the user already has:
// 409, and only the new item is removed at Plaid.
func TestDuplicateInstitutionRemovesOnlyTheNewItem(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	first, _ := r.json(t)["item_id"].(string)
	r = e.link("t1.test", "alice-key", "ins_109508")
	if r.status != 409 || r.errCode(t) != "duplicate_institution" {
		t.Fatalf("second = %d %s", r.status, r.body)
	}
	if got := r.json(t)["error"].(map[string]any)["item_id"]; got != first {
		t.Errorf("409 names item %v, want %s", got, first)
	}
	if ids := e.sim.ItemIDs(); !slices.Equal(ids, []string{first}) {
		t.Errorf("items at Plaid = %v, want only [%s]", ids, first)
	}
	if items, _ := e.db.Items("t1", "alice"); len(items) != 1 || items[0].ItemID != first {
		t.Errorf("stored items = %+v", items)
	}
}

// Issue 9.5: an exchange that yields an item another user holds is refused
// and removes nothing (defence in depth behind the Link-session binding).
func TestExchangeOfAnotherUsersItemRemovesNothing(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	r := e.link("t1.test", "alice-key", "ins_109508")
	aliceItem, _ := r.json(t)["item_id"].(string)
	at, err := e.db.AccessToken("t1", "alice", aliceItem)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []struct{ tenant, host, user, key string }{
		{"t1", "t1.test", "bob", "bob-key"}, {"t2", "t2.test", "carol", "carol-key"},
	} {
		// An update-mode link token for alice's item that (by some bug) is
		// bound to someone else.
		up := plaid.NewLinkTokenCreateRequest("x", "en", []plaid.CountryCode{"US"}, plaid.LinkTokenCreateRequestUser{ClientUserId: "x"})
		up.SetAccessToken(at)
		lt, _, err := e.simAPI().LinkTokenCreate(t.Context()).LinkTokenCreateRequest(*up).Execute()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if err := e.db.SaveLinkSession(store.LinkSession{Tenant: who.tenant, User: who.user, LinkToken: lt.GetLinkToken(),
			CreatedAt: now, Expiration: now.Add(30 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		pub, err := e.sim.CompleteLink(lt.GetLinkToken(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		r = e.do("POST", who.host, pathExchange, who.key, e.exchangeBody(pub, ""))
		if r.status != 404 || r.errCode(t) != "not_found" {
			t.Errorf("%s exchanging alice's item = %d %s, want 404 not_found", who.user, r.status, r.body)
		}
		if items, _ := e.db.Items(who.tenant, who.user); len(items) != 0 {
			t.Errorf("%s got items %+v", who.user, items)
		}
	}
	if ids := e.sim.ItemIDs(); !slices.Equal(ids, []string{aliceItem}) {
		t.Errorf("items at Plaid = %v, want alice's [%s] alive", ids, aliceItem)
	}
	if _, err := e.db.AccessToken("t1", "alice", aliceItem); err != nil {
		t.Errorf("alice lost her item: %v", err)
	}
}

// Issue 9.6: a public token is bound to the user (and tenant) whose link
// token made it; anyone else is refused before anything is exchanged.
func TestExchangeRefusesPublicTokenFromAnotherUsersLink(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{})
	lt := e.linkToken("t1.test", "alice-key", "")
	pub, err := e.sim.CompleteLink(lt, "ins_109508", "user_good")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, host, key, linkToken string }{
		{"bob", "t1.test", "bob-key", ""},
		{"bob naming alice's link token", "t1.test", "bob-key", lt},
		{"carol on t2", "t2.test", "carol-key", ""},
		{"carol naming alice's link token", "t2.test", "carol-key", lt},
	}
	for _, tt := range tests {
		r := e.do("POST", tt.host, pathExchange, tt.key, e.exchangeBody(pub, tt.linkToken))
		if r.status != 403 || r.errCode(t) != "link_session_mismatch" {
			t.Errorf("%s = %d %s, want 403 link_session_mismatch", tt.name, r.status, r.body)
		}
	}
	if n := len(e.sim.ItemIDs()); n != 1 {
		t.Errorf("items at Plaid = %d, want 1 (nothing removed)", n)
	}
	// Nothing was exchanged or destroyed: alice's token still works for her.
	r := e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt))
	if r.status != 200 || r.json(t)["persisted"] != true {
		t.Fatalf("alice's own exchange after the refusals = %d %s", r.status, r.body)
	}
	for _, u := range []struct{ t, u string }{{"t1", "bob"}, {"t2", "carol"}} {
		if items, _ := e.db.Items(u.t, u.u); len(items) != 0 {
			t.Errorf("%s holds %+v", u.u, items)
		}
	}

	// A public token no Link session of the caller produced (sandbox shortcut).
	st, _, err := e.simAPI().SandboxPublicTokenCreate(t.Context()).SandboxPublicTokenCreateRequest(
		*plaid.NewSandboxPublicTokenCreateRequest("ins_109509", []plaid.Products{"transactions"})).Execute()
	if err != nil {
		t.Fatal(err)
	}
	r = e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(st.GetPublicToken(), ""))
	if r.status != 403 || r.errCode(t) != "link_session_mismatch" {
		t.Errorf("unbound public token = %d %s, want 403 link_session_mismatch", r.status, r.body)
	}
}

// Issue 9.6: link sessions are durable: a restart between link-token and
// exchange keeps the binding.
func TestLinkSessionSurvivesRestart(t *testing.T) {
	t.Parallel()
	sim, simTS := newSim(t)
	dir := t.TempDir()
	e := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL})
	lt := e.linkToken("t1.test", "alice-key", "")
	e.stop()
	e2 := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL})
	pub, err := sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := e2.do("POST", "t1.test", pathExchange, "alice-key", e2.exchangeBody(pub, "")); r.status != 200 {
		t.Fatalf("exchange after restart = %d %s", r.status, r.body)
	}
}

var errTestCrash = errors.New("test: process killed here")

// Issue 9.7: a crash between Plaid's exchange and the save (simulated by the
// fault hook) leaves an intent that the next start reports as an orphan,
// with a metric and a log line.
func TestExchangeCrashIsReportedAsOrphan(t *testing.T) {
	t.Parallel()
	sim, simTS := newSim(t)
	dir := t.TempDir()
	e := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL, exchangeFault: func(stage string) error {
		if stage == faultExchanged {
			return errTestCrash
		}
		return nil
	}})
	lt := e.linkToken("t1.test", "alice-key", "")
	pub, err := sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt)); r.status < 500 {
		t.Fatalf("crashed exchange = %d %s", r.status, r.body)
	}
	e.stop()

	logw := &syncWriter{w: &bytes.Buffer{}}
	e2 := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL, logTo: logw})
	if r := e2.do("GET", "t1.test", pathStatus, "alice-key", nil); r.json(t)["linked"] != false {
		t.Errorf("status after the crash = %s, want nothing linked", r.body)
	}
	os, err := e2.db.Orphans()
	if err != nil || len(os) != 1 || os[0].Kind != store.OrphanLostExchange || os[0].User != "alice" || os[0].Tenant != "t1" {
		t.Fatalf("orphans after restart = %+v, %v", os, err)
	}
	if os[0].LinkTokenHash != store.LinkTokenHash(lt) {
		t.Errorf("orphan link token hash = %q", os[0].LinkTokenHash)
	}
	if p, _ := e2.db.PendingExchanges(); len(p) != 0 {
		t.Errorf("intents left pending: %+v", p)
	}
	if got := testutil.ToFloat64(e2.srv.metrics.orphans); got != 1 {
		t.Errorf("safeclose_orphan_items = %v, want 1", got)
	}
	if !strings.Contains(logw.String(), "orphan") {
		t.Errorf("no orphan log line in %s", logw.String())
	}

}

// Issue 9.7: a lost answer from /item/public_token/exchange (timeout after
// Plaid made the item) is reported at once, without a restart; a webhook
// for the item nobody holds is reported with its item_id.
func TestExchangeLostAnswerIsReportedAsOrphan(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envConfig{exchangeFault: func(stage string) error {
		if stage == faultExchanged {
			return fmt.Errorf("%w: %w", ErrPlaidDown, context.DeadlineExceeded)
		}
		return nil
	}})
	lt := e.linkToken("t1.test", "alice-key", "")
	pub, err := e.sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt))
	if r.status != 502 || r.errCode(t) != "plaid_unavailable" {
		t.Fatalf("lost answer = %d %s, want 502 plaid_unavailable", r.status, r.body)
	}
	os, _ := e.db.Orphans()
	if len(os) != 1 || os[0].Kind != store.OrphanLostExchange || os[0].User != "alice" {
		t.Fatalf("orphans = %+v", os)
	}
	if got := testutil.ToFloat64(e.srv.metrics.orphans); got != 1 {
		t.Errorf("safeclose_orphan_items = %v, want 1", got)
	}

	// Plaid made the item; a webhook for it names an item nobody holds.
	ids := e.sim.ItemIDs()
	if len(ids) != 1 {
		t.Fatalf("items at Plaid = %v", ids)
	}
	res, err := e.simTS.Client().Post(e.simTS.URL+"/__emu/item/reset_login", "application/json",
		strings.NewReader(`{"item_id":"`+ids[0]+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, "unknown-item orphan", func() bool {
		os, _ := e.db.Orphans()
		for _, o := range os {
			if o.Kind == store.OrphanUnknownItem && o.ItemID == ids[0] && o.Tenant == "t1" {
				return true
			}
		}
		return false
	})
	// The gauge counts an orphan once its write is durable, which may be a
	// sync round after the record is readable.
	eventually(t, "safeclose_orphan_items = 2", func() bool { return testutil.ToFloat64(e.srv.metrics.orphans) == 2 })
}

// A 2xx exchange answer whose body does not parse (cut short by a
// middlebox, a changed schema) is not a refusal: Plaid made a billable item
// whose access token we never read, so it is reported as an orphan, as a
// lost answer is. It used to count as "Plaid refused" (any status below
// 500), and the item was forgotten.
func TestExchangeUnreadableAnswerIsReportedAsOrphan(t *testing.T) {
	t.Parallel()
	sim, simTS := newSim(t)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, simTS.URL+r.URL.Path, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		res, err := simTS.Client().Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if r.URL.Path == "/item/public_token/exchange" {
			body = body[:len(body)/2]
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(front.Close)
	e := startEnv(t, envConfig{sim: sim, plaidURL: front.URL})
	lt := e.linkToken("t1.test", "alice-key", "")
	pub, err := sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt)); r.status != 502 {
		t.Fatalf("exchange with an unreadable answer = %d %s, want 502", r.status, r.body)
	}
	if ids := sim.ItemIDs(); len(ids) != 1 {
		t.Fatalf("items at Plaid = %v, want the one the exchange made", ids)
	}
	os, err := e.db.Orphans()
	if err != nil || len(os) != 1 || os[0].Kind != store.OrphanLostExchange || os[0].User != "alice" {
		t.Fatalf("orphans = %+v, %v; want one lost exchange of alice's", os, err)
	}
}

// Issue 9.7: the sealed token is saved before anything else after the
// exchange: a crash right after the save leaves the item held, no orphan.
func TestExchangeSavesBeforeItemGet(t *testing.T) {
	t.Parallel()
	sim, simTS := newSim(t)
	dir := t.TempDir()
	e := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL, exchangeFault: func(stage string) error {
		if stage == faultSaved {
			return errTestCrash
		}
		return nil
	}})
	lt := e.linkToken("t1.test", "alice-key", "")
	pub, err := sim.CompleteLink(lt, "ins_109508", "")
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", "t1.test", pathExchange, "alice-key", e.exchangeBody(pub, lt))
	e.stop()
	e2 := startEnv(t, envConfig{sim: sim, dir: dir, plaidURL: simTS.URL})
	if r := e2.do("GET", "t1.test", pathStatus, "alice-key", nil); r.json(t)["linked"] != true {
		t.Errorf("status after the crash = %s, want the item linked", r.body)
	}
	items, _ := e2.db.Items("t1", "alice")
	if len(items) != 1 || !slices.Equal(sim.ItemIDs(), []string{items[0].ItemID}) {
		t.Fatalf("items = %+v, at Plaid %v", items, sim.ItemIDs())
	}
	if os, _ := e2.db.Orphans(); len(os) != 0 {
		t.Errorf("orphans = %+v, want none", os)
	}
}

// syncWriter is a log sink safe for the server's goroutines and the test.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// updateRaceStore plays, on its next AccessToken, a state change that lands
// between the update-mode exchange's read of the item and its write (a
// webhook confirmed meanwhile), and answers that the stored token does not
// open, so the exchange stores Plaid's token again. setErr, when set, is
// what SetAccessToken answers.
type updateRaceStore struct {
	*store.DB
	armed  atomic.Bool
	setErr error
}

func (s *updateRaceStore) AccessToken(tenant, user, itemID string) (string, error) {
	if s.armed.CompareAndSwap(true, false) {
		if _, err := s.DB.UpdateItem(tenant, itemID, func(it *store.Item) error {
			it.State = store.StatePendingExpiration
			return nil
		}); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: test: the stored token does not open", store.ErrKeyMismatch)
	}
	return s.DB.AccessToken(tenant, user, itemID)
}

func (s *updateRaceStore) SetAccessToken(tenant, user, itemID, accessToken string) error {
	if s.setErr != nil {
		return s.setErr
	}
	return s.DB.SetAccessToken(tenant, user, itemID, accessToken)
}

// An update-mode exchange of a held item stores Plaid's token without
// writing back the item it read: a state written in between is kept (it
// wrote the whole item before, rolling the state back to ok). When the
// token cannot be stored, the answer says so (persisted false and a hint;
// it said persisted true before).
func TestUpdateModeExchangeKeepsConcurrentState(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		setErr error
	}{{"token stored", nil}, {"token not stored", fmt.Errorf("test: %w", store.ErrKeyMismatch)}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rs *updateRaceStore
			e := startEnv(t, envConfig{store: func(t testing.TB, kr *store.Keyring) Store {
				db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				rs = &updateRaceStore{DB: db, setErr: tt.setErr}
				return rs
			}})
			r := e.link("t1.test", "alice-key", "ins_109508")
			itemID, _ := r.json(t)["item_id"].(string)
			if r.status != 200 || itemID == "" {
				t.Fatalf("link = %d %s", r.status, r.body)
			}
			plaidToken, err := rs.DB.AccessToken("t1", "alice", itemID)
			if err != nil {
				t.Fatal(err)
			}
			r = e.do("POST", "t1.test", pathLinkToken, "alice-key", []byte(`{"item_id":"`+itemID+`"}`))
			if r.status != 200 || r.json(t)["mode"] != "update" {
				t.Fatalf("update-mode link-token = %d %s", r.status, r.body)
			}
			lt, _ := r.json(t)["link_token"].(string)
			pub, err := e.sim.CompleteLink(lt, "ins_109508", "user_good")
			if err != nil {
				t.Fatal(err)
			}
			rs.armed.Store(true)
			r = e.do("POST", "t1.test", pathExchange, "alice-key", []byte(`{"public_token":"`+pub+`"}`))
			if r.status != 200 || r.json(t)["item_id"] != itemID {
				t.Fatalf("update-mode exchange = %d %s", r.status, r.body)
			}
			if rs.armed.Load() {
				t.Fatal("the exchange never read the stored token: the race was not played")
			}
			got := r.json(t)
			if tt.setErr == nil {
				if got["persisted"] != true || got["persist_hint"] != nil {
					t.Errorf("answer = %s, want persisted true, no hint", r.body)
				}
			} else if hint, _ := got["persist_hint"].(string); got["persisted"] != false || !strings.Contains(hint, "key") {
				t.Errorf("answer = %s, want persisted false with a hint about the key", r.body)
			}
			it, err := rs.DB.Item("t1", itemID)
			if err != nil {
				t.Fatal(err)
			}
			if it.State != store.StatePendingExpiration {
				t.Errorf("state after the exchange = %s, want pending_expiration (written while it ran)", it.State)
			}
			if tok, err := rs.DB.AccessToken("t1", "alice", itemID); err != nil || tok != plaidToken {
				t.Errorf("stored token = %q, %v; want Plaid's", tok, err)
			}
		})
	}
}
