package plaidsim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// flakySink answers 500 to the first `fail` deliveries, then 200, and
// records each attempt's Plaid-Verification header.
type flakySink struct {
	url  string
	mu   sync.Mutex
	jwts []string
	body []byte
}

func newFlakySink(t testing.TB, fail int, _ *[]string) *flakySink {
	f := &flakySink{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.jwts = append(f.jwts, r.Header.Get("Plaid-Verification"))
		f.body = b
		n := len(f.jwts)
		f.mu.Unlock()
		if n <= fail {
			w.WriteHeader(500)
		}
	}))
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

func (f *flakySink) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.jwts) }

func (f *flakySink) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.jwts...)
}
