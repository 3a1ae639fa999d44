package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzDropTrailers: whatever trailer section a chunked request body ends
// with (announced or not), once dropTrailers and stripHopByHop have run
// the request as sent upstream carries none of it, in its headers or its
// trailers, and its body is whole. The request is read by fasthttp as the
// server reads it and parsed back by net/http as an upstream would.
func FuzzDropTrailers(f *testing.F) {
	for _, s := range []string{
		"X-Safeclose-User: mallory\r\n",
		"X-Safeclose-Claim-Role: admin\r\nForwarded: for=10.6.6.6\r\n",
		"X_Safeclose_User: mallory\r\nTrue-Client-IP: 10.6.6.6\r\n",
		"Trailer: X-Original-URL\r\nX-Original-URL: /admin\r\n",
		"User-Agent: forged\r\nX-Note: fuzz\r\n",
		"",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, trailer string, announce bool) {
		if strings.Contains(trailer, "\r\n\r\n") || !strings.HasSuffix(trailer, "\r\n") && trailer != "" {
			return // one trailer section, ended by the empty line below
		}
		raw := "POST /app HTTP/1.1\r\nHost: t1.test\r\nTransfer-Encoding: chunked\r\n"
		if announce {
			raw += "Trailer: X-Safeclose-User, X-Original-URL, User-Agent, X-Note\r\n"
		}
		raw += "\r\n5\r\nhello\r\n0\r\n" + trailer + "\r\n"
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return // fasthttp refuses it: nothing is forwarded
		}
		if !dropTrailers(&req.Header) {
			t.Fatalf("dropTrailers left fields of %q", trailer)
		}
		stripHopByHop(&req.Header)
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := req.Write(w); err != nil {
			t.Fatalf("Write: %v", err)
		}
		w.Flush()
		sent := out.String()
		up, err := http.ReadRequest(bufio.NewReader(&out))
		if err != nil {
			t.Fatalf("the upstream cannot read %q: %v", sent, err)
		}
		body, err := io.ReadAll(up.Body)
		if err != nil || string(body) != "hello" {
			t.Fatalf("upstream body %q, %v; want hello (sent %q)", body, err, sent)
		}
		for name := range up.Trailer {
			t.Errorf("trailer field %q forwarded (sent %q)", name, sent)
		}
		for name, v := range up.Header {
			if strings.Contains(trailer, name+":") || strings.Contains(strings.ToLower(trailer), strings.ToLower(name)+":") {
				if name != "Host" && name != "Content-Length" && name != "Content-Type" {
					t.Errorf("trailer field %q reached the header section as %q (sent %q)", name, v, sent)
				}
			}
		}
	})
}
