package hostabi

import "bytes"

// headerVisitor is the one implementation of the header reads: all names,
// the values of one name, or one cookie. The host functions (name from guest
// memory, N = []byte) and the decision cache (name from a recorded read,
// N = string) both use it, so a cached answer always equals what the host
// function would have returned. Its visit func is bound once, so visiting
// headers allocates nothing.
type headerVisitor[N string | []byte] struct {
	out   []byte // NUL-separated items, or the one cookie value
	count uint32
	mode  byte // opHeaderNames, opHeaderValues or opCookie
	name  N
	visit func(name, value []byte)
}

func (v *headerVisitor[N]) init(capacity int) {
	v.out = make([]byte, 0, capacity)
	v.visit = v.visitHeader
}

// run visits r's headers for mode and name, leaving the answer in out and
// count.
func (v *headerVisitor[N]) run(r Request, mode byte, name N) {
	v.out, v.count, v.mode, v.name = v.out[:0], 0, mode, name
	r.VisitHeaders(v.visit)
	if mode == opCookie && v.count > 1 { // ambiguous: not found
		v.out, v.count = v.out[:0], 0
	}
}

func (v *headerVisitor[N]) visitHeader(name, value []byte) {
	switch v.mode {
	case opHeaderNames:
		v.emit(name)
	case opHeaderValues:
		if equalFold(name, v.name) {
			v.emit(value)
		}
	case opCookie:
		// A name sent twice with different values is not found: a sibling
		// subdomain can set name=ITS_VALUE with Domain= the parent and a
		// longer Path, which the browser sends first (cookie tossing), so
		// "the first" would be the attacker's session.
		if v.count > 1 || !equalFold(name, "Cookie") {
			return
		}
		for {
			c, rest, ok := nextCookie(value, v.name)
			if !ok {
				return
			}
			switch {
			case v.count == 0:
				v.out = append(v.out[:0], c...)
				v.count = 1
			case !bytes.Equal(c, v.out):
				v.count = 2
				return
			}
			value = rest
		}
	}
}

// emit appends one NUL-separated item.
func (v *headerVisitor[N]) emit(b []byte) {
	if v.count > 0 {
		v.out = append(v.out, 0)
	}
	v.out = append(v.out, b...)
	v.count++
}

// equalFold is ASCII case-insensitive equality without allocating. Header
// names are ASCII tokens; the host functions and the cache use this same
// rule so that both agree on which header a name means.
func equalFold[T string | []byte](b []byte, s T) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// cookieValue finds name in one Cookie header value.
func cookieValue[N string | []byte](header []byte, name N) ([]byte, bool) {
	v, _, ok := nextCookie(header, name)
	return v, ok
}

// nextCookie finds the first pair named name in one Cookie header value,
// and returns its value and the rest of the header after it.
func nextCookie[N string | []byte](header []byte, name N) (value, rest []byte, found bool) {
	for len(header) > 0 {
		var pair []byte
		pair, header, _ = bytes.Cut(header, []byte(";"))
		k, v, ok := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
		if ok && string(k) == string(name) {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, header, true
		}
	}
	return nil, nil, false
}
