package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
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
