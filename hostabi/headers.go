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
		if v.count > 0 || !equalFold(name, "Cookie") {
			return
		}
		if c, ok := cookieValue(value, v.name); ok {
			v.out = append(v.out[:0], c...)
			v.count = 1
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
	for len(header) > 0 {
		var pair []byte
		pair, header, _ = bytes.Cut(header, []byte(";"))
		k, v, ok := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
		if ok && string(k) == string(name) {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return nil, false
}
