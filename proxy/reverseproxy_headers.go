package proxy

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Header hygiene for proxied requests and responses (issue 9.1–9.3).
//
// Header names are compared "folded": ASCII case-insensitively with '_', '-'
// and '.' treated as equal, because CGI/WSGI/PHP/Rack/nginx-style upstreams
// turn X_Safeclose_User and X.Safeclose.User into X-Safeclose-User.

// errHeaderName refuses a header name outside the RFC 9110 token charset.
var errHeaderName = badRequest("invalid_header", "a request header name contains characters outside the RFC 9110 token set")

// The header names Safeclose acts on, folded and lower case ('-' stands for
// any of "-_."). headerClass recognises them with a switch on the first
// byte, so an ordinary name (Authorization, Accept, Cookie…) costs one
// comparison per pass instead of a scan of every list below. The lists are
// the specification; TestHeaderClassMatchesLists and FuzzHeaderClass hold
// headerClass to them.
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

// Classes of a header name (headerClass), as bits.
const (
	classSafecloseSet   = 1 << iota // identity or forwarding: an identityPrefix or forwardPrefix name, or one of forwardNames
	classHop                        // one of hopByHop
	classFramingVariant             // folds to a framing header without being its exact name
	classConnection                 // folds to "connection"
	classRequestID                  // folds to "x-request-id"
)

// headerClass classifies a header name: the lists above, looked up by the
// folded first byte and the length. fasthttp yields its special headers
// under their exact names (Host, Content-Length), which are compared first.
func headerClass(k []byte) uint8 {
	if len(k) < 2 {
		return 0
	}
	switch foldByte(k[0]) {
	case 'x':
		switch {
		case foldHasPrefix(k, identityPrefix), foldHasPrefix(k, forwardPrefix):
			return classSafecloseSet
		case foldEqual(k, "x-request-id"):
			return classRequestID
		case foldIn(k, forwardNames):
			return classSafecloseSet
		}
	case 'f':
		if foldEqual(k, "forwarded") {
			return classSafecloseSet
		}
	case 't':
		switch len(k) {
		case 2, 7: // te, trailer
			if foldIn(k, hopByHop) {
				return classHop
			}
		case 14:
			if foldEqual(k, "true-client-ip") {
				return classSafecloseSet
			}
		case 17:
			if string(k) != "Transfer-Encoding" && foldEqual(k, "transfer-encoding") && !bytes.EqualFold(k, []byte("transfer-encoding")) {
				return classFramingVariant
			}
		}
	case 'c':
		switch len(k) {
		case 10:
			if foldEqual(k, "connection") {
				return classHop | classConnection
			}
		case 14:
			if string(k) != "Content-Length" && foldEqual(k, "content-length") && !bytes.EqualFold(k, []byte("content-length")) {
				return classFramingVariant
			}
		}
	case 'h':
		if string(k) != "Host" && foldEqual(k, "host") && !bytes.EqualFold(k, []byte("host")) {
			return classFramingVariant
		}
	case 'p', 'k', 'u': // proxy-*, keep-alive, upgrade
		if foldIn(k, hopByHop) {
			return classHop
		}
	}
	return 0
}

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

// isToken reports whether name is a non-empty RFC 9110 token.
func isToken(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// tokenChars[c] is isTokenChar(c), by table: isToken runs over every
// request header name.
var tokenChars = func() (t [256]bool) {
	for c := range t {
		t[c] = isTokenChar(byte(c))
	}
	return t
}()

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
	var nb [256]byte // names to delete, as in stripHopByHop
	var eb [8]int
	names, ends := nb[:0], eb[:0]
	for k := range h.All() {
		if !isToken(k) {
			return errHeaderName
		}
		if headerClass(k)&classSafecloseSet != 0 {
			names = append(names, k...)
			ends = append(ends, len(names))
		}
	}
	delNames(h, names, ends)
	return nil
}

// delNames deletes from h the header names packed one after another in
// names, each ending at its offset in ends: the names sanitizeRequest,
// stripHopByHop and dropTrailers collect while iterating h, which cannot
// change under its iterator. Concrete types, not an interface shared with
// delRespNames: an interface call would move the callers' stack buffers
// to the heap on every request.
func delNames(h *fasthttp.RequestHeader, names []byte, ends []int) {
	start := 0
	for _, end := range ends {
		h.DelBytes(names[start:end])
		start = end
	}
}

// delRespNames is delNames for a response header (stripHopByHopResp).
func delRespNames(h *fasthttp.ResponseHeader, names []byte, ends []int) {
	start := 0
	for _, end := range ends {
		h.DelBytes(names[start:end])
		start = end
	}
}

// stripHopByHop removes, just before forwarding, the hop-by-hop headers
// (and their name variants), name variants of the framing headers, and
// every header a client Connection header names, except tokens that name a
// framing header or a header Safeclose sets (those are set after this runs
// and must reach the upstream).
func stripHopByHop(h *fasthttp.RequestHeader) {
	var cb [128]byte // the Connection values, comma-joined
	conn, named, drop := cb[:0], false, false
	for k, v := range h.All() {
		c := headerClass(k)
		if c&classConnection != 0 {
			conn, named = append(append(conn, ','), v...), true
		}
		drop = drop || c&(classHop|classFramingVariant) != 0
	}
	if drop || named { // else the usual message: nothing to remove
		if !named {
			conn = nil // no Connection header: no tokens to honour
		}
		// The names to delete once the iteration is done, one after
		// another in names, each ending at its offset in ends: on the
		// stack for up to 8 names and 256 bytes.
		var nb [256]byte
		var eb [8]int
		names, ends := nb[:0], eb[:0]
		for k := range h.All() {
			if dropHopHeader(k, conn) {
				names = append(names, k...)
				ends = append(ends, len(names))
			}
		}
		delNames(h, names, ends)
	}
}

// stripHopByHopResp is stripHopByHop for the upstream's response: its own
// Connection header's tokens are applied, then it is removed. (The same
// code as stripHopByHop: over an iterator passed in, the loops' closures
// would go to the heap.)
func stripHopByHopResp(h *fasthttp.ResponseHeader) {
	var cb [128]byte // the Connection values, comma-joined
	conn, named, drop := cb[:0], false, false
	for k, v := range h.All() {
		c := headerClass(k)
		if c&classConnection != 0 {
			conn, named = append(append(conn, ','), v...), true
		}
		drop = drop || c&(classHop|classFramingVariant) != 0
	}
	if drop || named { // else the usual message: nothing to remove
		if !named {
			conn = nil // no Connection header: no tokens to honour
		}
		// The names to delete once the iteration is done, one after
		// another in names, each ending at its offset in ends: on the
		// stack for up to 8 names and 256 bytes.
		var nb [256]byte
		var eb [8]int
		names, ends := nb[:0], eb[:0]
		for k := range h.All() {
			if dropHopHeader(k, conn) {
				names = append(names, k...)
				ends = append(ends, len(names))
			}
		}
		delRespNames(h, names, ends)
	}
	// The upstream's "Connection: close" is about its connection to us, not
	// ours to the client.
	h.ResetConnectionClose()
}

// dropHopHeader reports whether k goes: a hop-by-hop header, a framing
// header's name variant, or a header a Connection value names (conn, its
// values comma-joined; never one Safeclose sets, the request id included).
func dropHopHeader(k, conn []byte) bool {
	c := headerClass(k)
	if c&(classHop|classFramingVariant) != 0 {
		return true
	}
	return conn != nil && c&(classSafecloseSet|classRequestID) == 0 && !isFraming(k) && namedIn(conn, k)
}

// isFraming reports whether k folds to a framing header (exact name or not).
func isFraming(k []byte) bool { return foldIn(k, framing) }

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
	keyUser            = []byte(HeaderUser)
	keyTenant          = []byte(HeaderTenant)
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
	if addr, ok := clientAddr(ctx); ok {
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

// clientAddr is the client's address (the PROXY protocol header's, behind
// a balancer that sends one; remoteIP is the address the connection was
// accepted from), IPv4-mapped addresses as IPv4; ok is false when the
// connection has no IP address. The forwarding headers, the access log and
// the webhook intake's sender checks read it.
func clientAddr(ctx *fasthttp.RequestCtx) (netip.Addr, bool) {
	a, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return a.AddrPort().Addr().Unmap(), true
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
