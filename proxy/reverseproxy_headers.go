package proxy

import (
	"bytes"
	"net"

	"github.com/valyala/fasthttp"
)

// Header hygiene for proxied requests and responses (issue 9.1–9.3).
//
// Header names are compared "folded": ASCII case-insensitively with '_', '-'
// and '.' treated as equal, because CGI/WSGI/PHP/Rack/nginx-style upstreams
// turn X_Safeclose_User and X.Safeclose.User into X-Safeclose-User.

// errHeaderName refuses a header name outside the RFC 9110 token charset.
var errHeaderName = badRequest("invalid_header", "a request header name contains characters outside the RFC 9110 token set")

// Folded lower-case names ('-' stands for any of "-_.").
var (
	// Safeclose sets every X-Safeclose-* header itself (identity).
	identityPrefix = "x-safeclose-"
	// forwardPrefix covers X-Forwarded-For/-Host/-Proto/-Port/-Prefix/...
	forwardPrefix = "x-forwarded"
	// forwardNames are other headers upstreams read as the client's address
	// or the original URL. Client copies are never forwarded.
	forwardNames = []string{
		"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-cluster-client-ip",
		"x-original-url", "x-original-uri", "x-original-host", "x-rewrite-url",
	}
	// hopByHop are the connection-specific headers (RFC 9110 §7.6.1) a proxy
	// must not forward, either way. Upgrade is dropped too; a genuine
	// WebSocket upgrade is re-sent as exactly "Connection: Upgrade" and
	// "Upgrade: websocket" by proxyWebSocket (websocket.go).
	hopByHop = []string{
		"connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
		"proxy-authenticate", "proxy-authorization",
	}
	// framing headers are managed by fasthttp. Connection tokens never
	// remove them, and only their name variants (Transfer_Encoding) are
	// dropped.
	framing = []string{"host", "content-length", "transfer-encoding"}
)

// foldByte maps a header-name byte to its folded form.
func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// foldHasPrefix reports whether name, folded, starts with prefix (folded).
func foldHasPrefix(name []byte, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldByte(name[i]) != prefix[i] {
			return false
		}
	}
	return true
}

func foldEqual(name []byte, target string) bool {
	return len(name) == len(target) && foldHasPrefix(name, target)
}

func foldIn(name []byte, list []string) bool {
	for _, s := range list {
		if foldEqual(name, s) {
			return true
		}
	}
	return false
}

// isSafecloseSet reports whether name is, or folds to, a header Safeclose
// itself sets or that claims to describe the client (identity, forwarding).
func isSafecloseSet(name []byte) bool {
	return foldHasPrefix(name, identityPrefix) || foldHasPrefix(name, forwardPrefix) || foldIn(name, forwardNames)
}

// isToken reports whether name is a non-empty RFC 9110 token.
func isToken(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// sanitizeRequest runs before routing and authentication on every request:
// it refuses header names that are not tokens and removes every client
// header that is, or folds to, an identity or forwarding header, so neither
// the auth plugin nor the upstream ever sees a forged one. A clean request
// costs one scan and no allocation.
func sanitizeRequest(h *fasthttp.RequestHeader) error {
	var del [][]byte
	for k := range h.All() {
		if !isToken(k) {
			return errHeaderName
		}
		if isSafecloseSet(k) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
	return nil
}

// stripHopByHop removes, just before forwarding, the hop-by-hop headers
// (and their name variants), name variants of the framing headers, and
// every header a client Connection header names, except tokens that name a
// framing header or a header Safeclose sets (those are set after this runs
// and must reach the upstream).
func stripHopByHop(h *fasthttp.RequestHeader) {
	var conn []byte // all Connection values, comma-joined
	var del [][]byte
	for k, v := range h.All() {
		if foldEqual(k, "connection") {
			conn = append(append(conn, ','), v...)
		}
	}
	for k := range h.All() {
		if dropHopHeader(k, conn) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
}

// stripHopByHopResp is stripHopByHop for the upstream's response: its own
// Connection header's tokens are applied, then it is removed.
func stripHopByHopResp(h *fasthttp.ResponseHeader) {
	var conn []byte
	var del [][]byte
	for k, v := range h.All() {
		if foldEqual(k, "connection") {
			conn = append(append(conn, ','), v...)
		}
	}
	for k := range h.All() {
		if dropHopHeader(k, conn) {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		h.DelBytes(k)
	}
	// The upstream's "Connection: close" is about its connection to us, not
	// ours to the client.
	h.ResetConnectionClose()
}

func dropHopHeader(k, conn []byte) bool {
	if foldIn(k, hopByHop) {
		return true
	}
	if foldIn(k, framing) {
		// The exact names are fasthttp's; only variants are dropped.
		return !bytes.EqualFold(k, []byte("host")) && !bytes.EqualFold(k, []byte("content-length")) &&
			!bytes.EqualFold(k, []byte("transfer-encoding"))
	}
	return conn != nil && !isSafecloseSet(k) && namedIn(conn, k)
}

// namedIn reports whether name is one of the comma-separated tokens of
// Connection header values (case-insensitive).
func namedIn(conn, name []byte) bool {
	for len(conn) > 0 {
		var f []byte
		f, conn, _ = bytes.Cut(conn, []byte(","))
		if f = bytes.TrimSpace(f); len(f) > 0 && bytes.EqualFold(f, name) {
			return true
		}
	}
	return false
}

// Keys of the headers Safeclose sets on every request, in fasthttp's
// canonical form, for SetCanonical: Set and SetBytesV copy and normalise
// the key each time (~20 ns a header; TestCanonicalKeys keeps them
// canonical).
var (
	keyXForwardedFor   = []byte("X-Forwarded-For")
	keyXForwardedHost  = []byte("X-Forwarded-Host")
	keyXForwardedProto = []byte("X-Forwarded-Proto")
	keyForwarded       = []byte("Forwarded")
	keyRequestID       = []byte(HeaderRequestID)
	protoHTTP          = []byte("http")
	protoHTTPS         = []byte("https")
)

// setForwarding sets X-Forwarded-For/-Host/-Proto and the RFC 7239
// Forwarded header from the connection. Safeclose is the edge: there is no
// trusted proxy in front of it, so client values are replaced, never
// appended to (sanitizeRequest already removed them).
func setForwarding(ctx *fasthttp.RequestCtx, h *fasthttp.RequestHeader) {
	var ipBuf [64]byte
	var ip []byte
	v6 := false
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		addr := a.AddrPort().Addr().Unmap()
		v6 = addr.Is6()
		ip = addr.AppendTo(ipBuf[:0])
		h.SetCanonical(keyXForwardedFor, ip)
	}
	host := ctx.Host()
	h.SetCanonical(keyXForwardedHost, host)
	proto := protoHTTP
	if ctx.IsTLS() {
		proto = protoHTTPS
	}
	h.SetCanonical(keyXForwardedProto, proto)

	var fb [256]byte
	f := append(fb[:0], "for="...)
	switch {
	case ip == nil:
		f = append(f, "unknown"...)
	case v6:
		f = append(append(append(f, `"[`...), ip...), `]"`...)
	default:
		f = append(f, ip...)
	}
	if quotable(host) && len(host) > 0 {
		f = append(f, ";host="...)
		f = appendTokenOrQuoted(f, host)
	}
	f = append(append(f, ";proto="...), proto...)
	h.SetCanonical(keyForwarded, f)
}

// quotable reports whether v fits an RFC 9110 quoted-string (no control
// bytes other than tab).
func quotable(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// appendTokenOrQuoted appends v as a token if it is one, else as a
// quoted-string ("t1.test:8080" is not a token).
func appendTokenOrQuoted(dst, v []byte) []byte {
	if isToken(v) {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}
