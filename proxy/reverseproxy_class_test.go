package proxy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// The list-based definitions headerClass replaced (one scan of every list
// per name): the specification it is held to.
func refSafecloseSet(name []byte) bool {
	return foldHasPrefix(name, identityPrefix) || foldHasPrefix(name, forwardPrefix) || foldIn(name, forwardNames)
}

func refDropHopHeader(k, conn []byte) bool {
	if foldIn(k, hopByHop) {
		return true
	}
	if foldIn(k, framing) {
		return !bytes.EqualFold(k, []byte("host")) && !bytes.EqualFold(k, []byte("content-length")) &&
			!bytes.EqualFold(k, []byte("transfer-encoding"))
	}
	return conn != nil && !refSafecloseSet(k) && !foldEqual(k, "x-request-id") && namedIn(conn, k)
}

// checkClass compares headerClass and dropHopHeader with the lists.
func checkClass(t *testing.T, k []byte) {
	t.Helper()
	c := headerClass(k)
	if got, want := c&classSafecloseSet != 0, refSafecloseSet(k); got != want {
		t.Errorf("headerClass(%q) safeclose-set = %v, want %v", k, got, want)
	}
	if got, want := c&classHop != 0, foldIn(k, hopByHop); got != want {
		t.Errorf("headerClass(%q) hop = %v, want %v", k, got, want)
	}
	if got, want := c&classConnection != 0, foldEqual(k, "connection"); got != want {
		t.Errorf("headerClass(%q) connection = %v, want %v", k, got, want)
	}
	if got, want := c&classRequestID != 0, foldEqual(k, "x-request-id"); got != want {
		t.Errorf("headerClass(%q) request id = %v, want %v", k, got, want)
	}
	for _, conn := range [][]byte{nil, []byte(","), append([]byte(","), k...), []byte(",close, " + string(k) + " ,x")} {
		if got, want := dropHopHeader(k, conn), refDropHopHeader(k, conn); got != want {
			t.Errorf("dropHopHeader(%q, %q) = %v, want %v", k, conn, got, want)
		}
	}
}

// TestHeaderClassMatchesLists: every listed name, its case and separator
// variants, near misses and ordinary names classify as the lists say.
func TestHeaderClassMatchesLists(t *testing.T) {
	t.Parallel()
	names := []string{"", "a", "x", "te", "TE", "Te", "t", "tE", "tea", "Host", "host", "HOST", "H_st", "Ho_t", "hosts",
		"Authorization", "Accept", "Cookie", "User-Agent", "Content-Type", "Content-Length", "content_length",
		"Content.Length", "Transfer-Encoding", "Transfer_Encoding", "transfer-encodings", "Connection", "connection",
		"Connect1on", "Keep-Alive", "Keep_Alive", "Upgrade", "UPGRADE", "Upgrade-Insecure-Requests",
		"Proxy-Authorization", "Proxy_Authenticate", "Proxy-Connection", "Proxy", "Trailer", "Trailers",
		"X-Request-Id", "X_Request_ID", "X-Request-Ids", "X-Safeclose-User", "x.safeclose.tenant", "X-Safeclose",
		"X-Forwarded-For", "X_Forwarded_Host", "X-Forwarded", "X-Forward", "Forwarded", "forwarded_", "Forwarde",
		"X-Real-IP", "X-Client-IP", "True-Client-IP", "True_Client_Ip", "X-Cluster-Client-IP", "X-Original-URL",
		"X-Original-URI", "X-Original-Host", "X-Rewrite-URL", "X-Powered-By", "Date", "Server", "Set-Cookie"}
	for _, l := range [][]string{hopByHop, framing, forwardNames, {identityPrefix + "x", forwardPrefix, forwardPrefix + "-port"}} {
		names = append(names, l...)
	}
	for _, n := range names {
		for _, v := range []string{n, string(bytes.ToUpper([]byte(n))), string(bytes.ReplaceAll([]byte(n), []byte("-"), []byte("_"))),
			string(bytes.ReplaceAll([]byte(n), []byte("-"), []byte(".")))} {
			checkClass(t, []byte(v))
		}
	}
}

// FuzzHeaderClass: headerClass and dropHopHeader agree with the lists on
// any name.
func FuzzHeaderClass(f *testing.F) {
	for _, n := range append(append(append([]string{"X-Request-Id", "Host", "Authorization"}, hopByHop...), framing...), forwardNames...) {
		f.Add([]byte(n))
	}
	f.Fuzz(func(t *testing.T, k []byte) { checkClass(t, k) })
}

// More names to delete than stripHopByHop and sanitizeRequest keep on the
// stack (8 names, 256 bytes): every one still goes, and nothing else.
func TestStripManyHeaders(t *testing.T) {
	t.Parallel()
	var h fasthttp.RequestHeader
	h.SetHost("t1.test")
	h.Set("Authorization", "Bearer k")
	var conn []string
	for i := range 12 {
		name := fmt.Sprintf("X-Hop-%02d-%s", i, strings.Repeat("n", 40))
		h.Set(name, "v")
		h.Set(fmt.Sprintf("X_Forwarded_%02d_%s", i, strings.Repeat("f", 40)), "forged")
		conn = append(conn, name)
	}
	h.Set("Connection", strings.Join(conn, ", "))
	if err := sanitizeRequest(&h); err != nil {
		t.Fatal(err)
	}
	stripHopByHop(&h)
	var left []string
	for k := range h.All() {
		left = append(left, string(k))
	}
	if want := []string{"Host", "Authorization"}; !slices.Equal(left, want) {
		t.Errorf("headers left %q, want %q", left, want)
	}
}
