package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/store"
)

// hostilePlaid is the emulator behind a man in the middle: requests to a
// path in rewrite go to the emulator first, then rewrite writes the answer
// the proxy gets instead of the emulator's.
type hostilePlaid struct {
	sim *plaidsim.Server
	mu  sync.Mutex
	rw  map[string]func(w http.ResponseWriter, real []byte)
}

func (h *hostilePlaid) set(path string, fn func(w http.ResponseWriter, real []byte)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rw[path] = fn
}

func (h *hostilePlaid) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	fn := h.rw[r.URL.Path]
	h.mu.Unlock()
	if fn == nil {
		h.sim.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	h.sim.ServeHTTP(rec, r)
	fn(w, rec.Body.Bytes())
}

// startHostilePlaid starts the proxy in front of a hostile Plaid.
func startHostilePlaid(t *testing.T, plaidTimeout time.Duration) (*testEnv, *hostilePlaid) {
	t.Helper()
	sim, _ := newSim(t)
	h := &hostilePlaid{sim: sim, rw: map[string]func(http.ResponseWriter, []byte){}}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	e := startEnv(t, envConfig{sim: sim, plaidURL: ts.URL, options: func(o *Options) {
		if plaidTimeout > 0 {
			o.PlaidTimeout = plaidTimeout
		}
	}})
	return e, h
}

// withField rewrites one string field of Plaid's JSON answer.
func withField(field string, value any) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, real []byte) {
		var m map[string]any
		if err := json.Unmarshal(real, &m); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		m[field] = value
		b, _ := json.Marshal(m)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b) //nolint:errcheck // the proxy may hang up
	}
}

// padded answers Plaid's real JSON with n bytes of whitespace inside it,
// written as a stream so the test itself holds none of it.
func padded(n int) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, real []byte) {
		w.Header().Set("Content-Type", "application/json")
		real = bytes.TrimSpace(real)
		if _, err := w.Write(real[:len(real)-1]); err != nil { // all but the closing '}'
			return
		}
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for i := 0; i < n/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte("}")) //nolint:errcheck // the proxy may hang up
	}
}

// A hostile or broken Plaid (or a man in the middle on a misconfigured base
// URL) answers with a body of hundreds of MB: the proxy must not read it
// whole into memory (plaid-go's client reads every answer with ReadAll).
func TestHostilePlaidHugeAnswerIsRefused(t *testing.T) {
	t.Parallel()
	e, h := startHostilePlaid(t, 0)
	h.set("/link/token/create", padded(256<<20))
	r := e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	if r.status != 502 || r.errCode(t) != "plaid_unavailable" {
		t.Errorf("link-token with a 256 MiB Plaid answer = %d %s, want 502 plaid_unavailable", r.status, r.body)
	}
	h.set("/link/token/create", nil)

	h.set("/item/public_token/exchange", padded(256<<20))
	r = e.link("t1.test", "alice-key", "ins_109508")
	if r.status != 502 || r.errCode(t) != "plaid_unavailable" {
		t.Errorf("exchange with a 256 MiB Plaid answer = %d %s, want 502 plaid_unavailable", r.status, r.body)
	}
	if items, _ := e.db.Items("t1", "alice"); len(items) != 0 {
		t.Errorf("items = %+v, want none", items)
	}
	if os, _ := e.db.Orphans(); len(os) != 1 || os[0].Kind != store.OrphanLostExchange {
		t.Errorf("orphans = %+v, want one lost_exchange", os)
	}
}

// An answer that trickles forever is cut at PlaidTimeout.
func TestHostilePlaidTricklingAnswerIsCut(t *testing.T) {
	t.Parallel()
	e, h := startHostilePlaid(t, 300*time.Millisecond)
	h.set("/link/token/create", func(w http.ResponseWriter, real []byte) {
		w.Header().Set("Content-Type", "application/json")
		for range 100 { // 10 s at most
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	start := time.Now()
	r := e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	if r.status != 502 && r.status != 504 {
		t.Errorf("link-token with a trickling answer = %d %s, want 502 or 504", r.status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("link-token took %v, want about PlaidTimeout (300ms)", d)
	}
}

// Identifiers in Plaid's answers become store keys, log fields and JSON the
// client reads: ones that are not Plaid identifiers (control bytes, NUL,
// spaces, non-ASCII, 1 MB, empty) are refused as a broken answer.
func TestHostilePlaidMalformedIdentifiers(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name  string
		value any
	}{
		{"newline", "item\n{\"level\":\"ERROR\"}"},
		{"crlf", "item\r\nX-Injected: 1"},
		{"nul", "item\x00x"},
		{"space", "item id"},
		{"separator", "t2\x00carol"},
		{"non-utf8", "item\xff\xfe"},
		{"empty", ""},
		{"1MB", strings.Repeat("a", 1<<20)},
		{"not a string", 42},
	}
	for _, field := range []string{"item_id", "access_token"} {
		for _, tt := range bad {
			t.Run(field+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				e, h := startHostilePlaid(t, 0)
				h.set("/item/public_token/exchange", withField(field, tt.value))
				r := e.link("t1.test", "alice-key", "ins_109508")
				if r.status != 502 || r.errCode(t) != "plaid_unavailable" {
					t.Errorf("exchange with %s %s = %d %.300s, want 502 plaid_unavailable", field, tt.name, r.status, r.body)
				}
				if items, _ := e.db.Items("t1", "alice"); len(items) != 0 {
					t.Errorf("items = %.300v, want none", items)
				}
				// Plaid answered 2xx: it may have made an item we cannot
				// hold, so the exchange is reported like a lost answer.
				if os, _ := e.db.Orphans(); len(os) != 1 || os[0].Kind != store.OrphanLostExchange || os[0].User != "alice" {
					t.Errorf("orphans = %+v, want one lost_exchange for alice", os)
				}
			})
		}
	}
}

// The same for the other identifiers Safeclose keeps or shows: the link
// token (stored, handed to the browser), the institution (stored, shown)
// and Plaid's error_code (shown in the 502's message).
func TestHostilePlaidMalformedLinkTokenInstitutionAndErrorCode(t *testing.T) {
	t.Parallel()
	e, h := startHostilePlaid(t, 0)
	h.set("/link/token/create", withField("link_token", "link-\r\nx\x00"+strings.Repeat("y", 300)))
	r := e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	if r.status != 502 || r.errCode(t) != "plaid_unavailable" {
		t.Errorf("link-token with a malformed link_token = %d %.300s, want 502 plaid_unavailable", r.status, r.body)
	}
	h.set("/link/token/create", nil)

	h.set("/item/get", func(w http.ResponseWriter, real []byte) {
		var m map[string]any
		json.Unmarshal(real, &m) //nolint:errcheck // the emulator's own answer
		m["item"].(map[string]any)["institution_id"] = "ins_1\n{\"level\":\"ERROR\"}"
		b, _ := json.Marshal(m)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b) //nolint:errcheck // the proxy may hang up
	})
	r = e.link("t1.test", "alice-key", "ins_109508")
	if r.status != 200 || r.json(t)["institution_id"] != nil {
		t.Errorf("exchange with a malformed institution_id = %d %s, want 200 without institution", r.status, r.body)
	}
	items, _ := e.db.Items("t1", "alice")
	if len(items) != 1 || items[0].InstitutionID != "" {
		t.Errorf("items = %+v, want one without institution", items)
	}
	h.set("/item/get", nil)

	h.set("/link/token/create", func(w http.ResponseWriter, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error_type":"INVALID_REQUEST","error_code":"` + strings.Repeat("X", 10000) + `","request_id":"r"}`)) //nolint:errcheck // the proxy may hang up
	})
	r = e.do("POST", "t1.test", pathLinkToken, "alice-key", nil)
	if r.status != 502 || len(r.body) > 1000 {
		t.Errorf("link-token refused with a 10 KB error_code = %d %.300s (%d bytes), want a short 502", r.status, r.body, len(r.body))
	}
}

// A verification key Plaid (or whoever answers its base URL) should never
// hand out: the genuine webhook it is fetched for is refused, not trusted.
func TestHostilePlaidBadVerificationKeyRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		field string
		value any
	}{
		{"control: the genuine key", "", nil},
		{"kty RSA", "kty", "RSA"},
		{"alg none", "alg", "none"},
		{"alg HS256", "alg", "HS256"},
		{"crv P-384", "crv", "P-384"},
		{"use enc", "use", "enc"},
		{"expired", "expired_at", 1_600_000_000},
		{"another kid", "kid", "someone-else"},
		{"x not base64", "x", "!!\n"},
		{"x 1 MB", "x", strings.Repeat("A", 1<<20)},
		{"y missing", "y", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, h := startHostilePlaid(t, 0)
			h.set("/webhook_verification_key/get", func(w http.ResponseWriter, real []byte) {
				var m map[string]any
				json.Unmarshal(real, &m) //nolint:errcheck // the emulator's own answer
				if tt.field != "" {
					m["key"].(map[string]any)[tt.field] = tt.value
				}
				b, _ := json.Marshal(m)
				w.Header().Set("Content-Type", "application/json")
				w.Write(b) //nolint:errcheck // the proxy may hang up
			})
			r := e.postSigned("t1.test", []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"x"}`))
			if tt.field == "" {
				if r.status != 200 {
					t.Errorf("webhook with the genuine key = %d %s, want 200", r.status, r.body)
				}
				return
			}
			if r.status < 400 {
				t.Errorf("webhook verified with a key whose %s is %.40v: %d %s", tt.field, tt.value, r.status, r.body)
			}
		})
	}
}

// Plaid answers bob's exchange with the item_id alice holds (another
// tenant's user too): refused, and alice's item and token stay as they were.
func TestHostilePlaidAnswersAnotherUsersItemID(t *testing.T) {
	t.Parallel()
	e, h := startHostilePlaid(t, 0)
	r := e.link("t1.test", "alice-key", "ins_109508")
	aliceItem, _ := r.json(t)["item_id"].(string)
	at, err := e.db.AccessToken("t1", "alice", aliceItem)
	if err != nil {
		t.Fatal(err)
	}
	h.set("/item/public_token/exchange", withField("item_id", aliceItem))
	for _, who := range []struct{ tenant, host, user, key string }{
		{"t1", "t1.test", "bob", "bob-key"}, {"t2", "t2.test", "carol", "carol-key"},
	} {
		r = e.link(who.host, who.key, "ins_109508")
		if r.status != 404 {
			t.Errorf("%s's exchange answered with alice's item_id = %d %s, want 404", who.user, r.status, r.body)
		}
		if items, _ := e.db.Items(who.tenant, who.user); len(items) != 0 {
			t.Errorf("%s got items %+v", who.user, items)
		}
	}
	if got, err := e.db.AccessToken("t1", "alice", aliceItem); err != nil || got != at {
		t.Errorf("alice's token after the attack: err %v, changed %v", err, got != at)
	}
}
