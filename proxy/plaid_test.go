package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A Plaid answer that redirects (a wrong base URL, an egress proxy, a
// captive portal) must not take the tenant's Plaid secret and an access
// token to the redirect's target: plaid-go sends the secret as a header
// (PLAID-SECRET), which net/http copies to any host it follows a 307 or
// 308 to, with the body that holds the access token.
func TestPlaidRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string // what reached the redirect's target
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.URL.Path+" "+r.Header.Get("PLAID-SECRET")+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(elsewhere.Close)
	sim, simTS := newSim(t)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/item/get" {
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		r2, err := http.NewRequestWithContext(r.Context(), r.Method, simTS.URL+r.URL.Path, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r2.Header = r.Header.Clone()
		resp, err := simTS.Client().Do(r2)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)
	logs := &syncWriter{w: &bytes.Buffer{}}
	e := startEnv(t, envConfig{sim: sim, plaidURL: front.URL, logTo: logs})

	r := e.link("t1.test", "alice-key", "ins_109508")
	if r.status != 200 || r.json(t)["persisted"] != true {
		t.Fatalf("exchange = %d %s, want 200 persisted (item/get failing is not fatal)", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 0 {
		t.Errorf("the redirect's target received %q: a Plaid redirect was followed with the secret and the access token", got)
	}
	if !strings.Contains(logs.String(), "item/get after exchange failed") {
		t.Errorf("the refused redirect is not logged as a failed item/get; log:\n%s", logs)
	}
}
