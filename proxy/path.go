package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Path normalisation. Every request path is normalised once, before
// routing and authentication, and the auth plugin, the built-in routes and
// the upstream all see the same result, so a rule a plugin checks is the rule
// the upstream applies (issue 9.4). See hostabi/ABI.md §4.1.

// errPath is the reason a path is refused; classify answers 400 invalid_path.
var errPath = badRequest("invalid_path", "the request path is malformed or ambiguous (encoded '/', '\\', encoded dot segments, control characters)")

// errTarget is a request target that is neither origin-form nor absolute-form.
var errTarget = badRequest("invalid_path", "the request target must be a path (origin-form) or an http(s) URL")

// normalizePath appends the normalised form of the raw path p (the part of
// the request target before '?') to dst:
//
//   - a percent-encoded unreserved character (ALPHA DIGIT - . _ ~) is decoded;
//     every other percent-encoding keeps its byte with uppercase hex digits;
//   - a byte not allowed literally in a path (controls excepted) is
//     percent-encoded (non-ASCII UTF-8, '"', '<', '>', '{', '}', '|', '^', '`');
//   - empty segments ("//") are collapsed, then "." and ".." segments are
//     removed as RFC 3986 §5.2.4 does; ".." never climbs above the root;
//   - a trailing '/' (or a trailing dot segment) leaves a trailing '/'.
//
// Ambiguous forms, which upstreams decode differently, are refused with
// errPath: an encoded '/' (%2F) or '\' (%5C), a literal '\', a dot segment
// written with any encoded dot (%2e, .%2E), a "." or ".." segment followed by
// ';' parameters (Tomcat reads "..;" as ".."), NUL or any control byte
// (literal or encoded), '#', a '%' not followed by two hex digits, and a
// path that does not start with '/'.
//
// The result starts with '/', holds no "//" and no dot segment, and
// normalizePath(normalizePath(p)) == normalizePath(p).
func normalizePath(dst, p []byte) ([]byte, error) {
	if len(p) == 0 || p[0] != '/' {
		return dst, errPath
	}
	start := len(dst)
	dst = append(dst, '/')
	for seg := range bytes.SplitSeq(p[1:], []byte("/")) {
		if len(seg) == 0 {
			continue // "//" collapses
		}
		segStart := len(dst)
		encodedDot := false
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			switch {
			case c == '%':
				if i+2 >= len(seg) {
					return dst[:start], errPath
				}
				hi, ok1 := unhex(seg[i+1])
				lo, ok2 := unhex(seg[i+2])
				if !ok1 || !ok2 {
					return dst[:start], errPath
				}
				b := hi<<4 | lo
				i += 2
				switch {
				case b == '/' || b == '\\' || b < 0x20 || b == 0x7f:
					return dst[:start], errPath
				case isUnreserved(b):
					if b == '.' {
						encodedDot = true
					}
					dst = append(dst, b)
				default:
					dst = appendPct(dst, b)
				}
			case c < 0x20 || c == 0x7f || c == '\\' || c == '#':
				return dst[:start], errPath
			case isPathChar(c):
				dst = append(dst, c)
			default:
				dst = appendPct(dst, c)
			}
		}
		s := dst[segStart:]
		name, _, params := bytes.Cut(s, []byte(";"))
		dot := len(name) == 1 && name[0] == '.'
		dotdot := len(name) == 2 && name[0] == '.' && name[1] == '.'
		if (dot || dotdot) && (params || encodedDot) {
			return dst[:start], errPath
		}
		switch {
		case dot:
			dst = dst[:segStart]
		case dotdot:
			dst = dst[:segStart]
			// Drop the previous segment and its '/', never the root's '/'.
			if len(dst)-start > 1 {
				j := bytes.LastIndexByte(dst[start:len(dst)-1], '/')
				dst = dst[:start+j+1]
			}
		default:
			dst = append(dst, '/')
		}
	}
	// Every kept segment was followed by '/'; keep it only where the input
	// ended with '/' or a dot segment.
	if len(dst)-start > 1 && !endsDirectory(p) {
		dst = dst[:len(dst)-1]
	}
	return dst, nil
}

// endsDirectory reports whether a raw path's last segment is empty, "." or
// ".." (unencoded: encoded dot segments were refused), so the normalised
// path ends with '/'.
func endsDirectory(p []byte) bool {
	i := bytes.LastIndexByte(p, '/')
	last := p[i+1:]
	return len(last) == 0 || string(last) == "." || string(last) == ".."
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func appendPct(dst []byte, b byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(dst, '%', hex[b>>4], hex[b&15])
}

// isUnreserved: RFC 3986 unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar: RFC 3986 pchar minus pct-encoded = unreserved / sub-delims /
// ":" / "@".
func isPathChar(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

// splitTarget splits a request target into its path and its query (without
// '?', nil when there is none). An absolute-form target ("http://host/p?q")
// yields its path ("/" when empty); any other form is refused.
func splitTarget(t []byte) (path, query []byte, hasQuery bool, err error) {
	if len(t) == 0 {
		return nil, nil, false, errTarget
	}
	if t[0] != '/' {
		rest, ok := cutSchemeFold(t, "http://")
		if !ok {
			rest, ok = cutSchemeFold(t, "https://")
		}
		if !ok {
			return nil, nil, false, errTarget
		}
		i := bytes.IndexAny(rest, "/?")
		if i < 0 {
			return []byte("/"), nil, false, nil
		}
		if rest[i] == '?' {
			return []byte("/"), rest[i+1:], true, nil
		}
		t = rest[i:]
	}
	path, query, hasQuery = bytes.Cut(t, []byte("?"))
	return path, query, hasQuery, nil
}

func cutSchemeFold(t []byte, scheme string) ([]byte, bool) {
	if len(t) >= len(scheme) && bytes.EqualFold(t[:len(scheme)], []byte(scheme)) {
		return t[len(scheme):], true
	}
	return nil, false
}

// canonicalizeTarget replaces the request target with its normalised
// origin form, normalised path plus the original query (untouched), and
// returns the normalised path. The request is left unchanged when the
// target is already canonical. An absolute-form target's authority becomes
// the Host header, as RFC 9112 §3.2.2 asks, so routing, plugin and upstream
// agree on the host too.
func canonicalizeTarget(ctx *fasthttp.RequestCtx) ([]byte, error) {
	h := &ctx.Request.Header
	raw := h.RequestURI()
	p, q, hasQuery, err := splitTarget(raw)
	if err != nil {
		return nil, err
	}
	var buf [512]byte
	n, err := normalizePath(buf[:0], p)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 && raw[0] == '/' && bytes.Equal(n, p) {
		return raw[:len(p)], nil
	}
	if raw[0] != '/' {
		h.SetHostBytes(ctx.URI().Host())
	}
	pathLen := len(n)
	if hasQuery {
		n = append(append(n, '?'), q...)
	}
	ctx.Request.SetRequestURIBytes(n)
	return h.RequestURI()[:pathLen], nil
}

// canonicalHost returns the host the request is routed by, fasthttp's
// reading of the (normalised) target and Host header: lower case, without
// userinfo. It is also the Host the upstream gets (fasthttp writes the
// parsed host), so the Host header is set to it when they differ: a plugin
// that checks the header saw "T1.test" or "a.test@b.test" where the upstream
// got "t1.test" or "b.test".
func canonicalHost(ctx *fasthttp.RequestCtx) []byte {
	host := ctx.Host()
	if h := &ctx.Request.Header; !bytes.Equal(h.Host(), host) {
		h.SetHostBytes(host)
	}
	return host
}

// NormalizeTarget returns the request target t ("/path?query" or an
// absolute http(s) URL) as the proxy rewrites it before authentication: the
// normalised path plus the query unchanged. It fails for targets the proxy
// refuses with 400 invalid_path. `safeclose plugin run` can use it to show a
// plugin what the proxy would show it.
func NormalizeTarget(t string) (string, error) {
	p, q, hasQuery, err := splitTarget([]byte(t))
	if err != nil {
		return "", err
	}
	n, err := normalizePath(nil, p)
	if err != nil {
		return "", err
	}
	if hasQuery {
		n = append(append(n, '?'), q...)
	}
	return string(n), nil
}
