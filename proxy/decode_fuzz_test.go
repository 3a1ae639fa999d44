package proxy

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzDecodeBody: the request body decoder never panics, refuses with a
// 400 and a known code, and accepts only a single object of known fields.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{"public_token":"public-sandbox-1"}`, `{"item_id":"x"}`, `{}`, ``, `[]`, `{"a":1}`,
		`{"public_token":1}`, `{"public_token":"a"}{"x":1}`, `null`, `{"public_token":"\u0000"}`} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{"invalid_json": true, "invalid_field": true, "unknown_field": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&exchangeRequest{}, &linkTokenRequest{}} {
			err := decodeBody(body, v, false)
			if err == nil {
				continue
			}
			var br *badRequestError
			if !errors.As(err, &br) || !codes[br.code] {
				t.Fatalf("decodeBody(%q) = %v; want a bad request with a known code", body, err)
			}
			if st, d := classify(err); st != http.StatusBadRequest || d.Code != br.code || d.Message == "" {
				t.Fatalf("classify(%v) = %d %+v", err, st, d)
			}
		}
	})
}
