package hostabi

import (
	"bytes"
	"sync"
	"time"
)

// decisionCache lets the host reuse an auth plugin's allow decision for a
// request that presents the same values for every request input the plugin
// read. It is opt-in (PluginOptions.CacheTTL) because it is only sound for
// a plugin whose answer is a function of those inputs: the host records the
// sequence of reads during a call (method, URI, header and cookie lookups,
// source address, body); a deterministic guest given the same values takes
// the same path and returns the same answer. Calls that read the clock or
// the key/value store are never cached, and a decision based on a verified
// JWT expires with the token. See RATIONALE.md "Why auth decisions can be
// cached, and when".
type decisionCache struct {
	ttl time.Duration
	now func() time.Time

	mu     sync.RWMutex
	m      map[string]cachedDecision
	shapes [][]read // distinct read sequences seen, most recent first
}

type cachedDecision struct {
	d   Decision
	exp time.Time
}

// read is one recorded request input: what was asked (op, arg).
type read struct {
	op  byte
	arg string
}

const (
	opMethod byte = iota + 1
	opURI
	opHeaderValues
	opHeaderNames
	opCookie
	opSource
	opBody
)

const (
	cacheLimit = 10000
	maxShapes  = 8
	maxReads   = 16
)

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func newDecisionCache(ttl time.Duration, now func() time.Time) *decisionCache {
	return &decisionCache{ttl: ttl, now: now, m: map[string]cachedDecision{}}
}

// appendShape writes the shape part of a key.
func appendShape(b []byte, shape []read) []byte {
	for _, r := range shape {
		b = append(b, r.op)
		b = append(b, r.arg...)
		b = append(b, 0)
	}
	return append(b, 0xff)
}

// lookup computes, for each known read sequence, the request's values and
// returns a cached decision if one matches.
func (c *decisionCache) lookup(bodyLimit int, r Request) (Decision, bool) {
	c.mu.RLock()
	shapes := c.shapes
	c.mu.RUnlock()
	if len(shapes) == 0 {
		return Decision{}, false
	}
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	sc := scanners.Get().(*scanner)
	defer scanners.Put(sc)
	now := c.now()
	for _, shape := range shapes {
		b := appendShape((*bp)[:0], shape)
		for _, rd := range shape {
			b = sc.appendValue(b, r, rd, bodyLimit)
		}
		*bp = b
		c.mu.RLock()
		e, ok := c.m[string(b)]
		c.mu.RUnlock()
		if ok && now.Before(e.exp) {
			return e.d, true
		}
	}
	return Decision{}, false
}

// store keeps an allow decision under the call's recorded reads.
func (c *decisionCache) store(in *instance, d Decision) {
	if in.uncacheable || len(in.reads) == 0 || len(in.reads) > maxReads {
		return
	}
	exp := c.now().Add(c.ttl)
	if !in.jwtExp.IsZero() && in.jwtExp.Before(exp) {
		exp = in.jwtExp
	}
	key := string(append(appendShape(nil, in.reads), in.values...))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= cacheLimit {
		clear(c.m)
	}
	c.m[key] = cachedDecision{d: d, exp: exp}
	for _, s := range c.shapes {
		if sameShape(s, in.reads) {
			return
		}
	}
	shape := append([]read(nil), in.reads...)
	c.shapes = append([][]read{shape}, c.shapes...)
	if len(c.shapes) > maxShapes {
		c.shapes = c.shapes[:maxShapes]
	}
}

func sameShape(a, b []read) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// record notes one read of the current call and the value the guest got,
// encoded exactly as scanner.appendValue encodes it for a later lookup
// (lists and cookies carry their count after the value). The host already
// computed the value, so recording costs an append, not a second pass.
func (in *instance) record(op byte, arg, value []byte, count uint32) {
	if in.p.cache == nil || in.uncacheable {
		return
	}
	if len(in.reads) >= maxReads {
		in.uncacheable = true
		return
	}
	in.reads = append(in.reads, read{op: op, arg: string(arg)})
	in.values = appendFramed(in.values, value)
	if op == opHeaderValues || op == opHeaderNames || op == opCookie {
		in.values = append(in.values, byte(count))
	}
}

func appendFramed(b, v []byte) []byte {
	n := len(v)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, v...)
}

// scanner computes read values; its visit func is bound once so visiting
// headers allocates nothing.
type scanner struct {
	buf   []byte
	mode  byte
	arg   string
	count int
	visit func(name, value []byte)
}

func newScanner() *scanner {
	s := &scanner{buf: make([]byte, 0, 256)}
	s.visit = s.visitHeader
	return s
}

var scanners = sync.Pool{New: func() any { return newScanner() }}

// appendValue appends what read rd returns for r.
func (s *scanner) appendValue(b []byte, r Request, rd read, bodyLimit int) []byte {
	switch rd.op {
	case opMethod:
		return appendFramed(b, r.Method())
	case opURI:
		return appendFramed(b, r.URI())
	case opSource:
		return appendFramed(b, r.SourceAddr())
	case opBody:
		body := r.Body()
		if len(body) > bodyLimit {
			body = body[:bodyLimit]
		}
		return appendFramed(b, body)
	case opHeaderValues, opHeaderNames, opCookie:
		s.buf = s.buf[:0]
		s.mode, s.arg, s.count = rd.op, rd.arg, 0
		r.VisitHeaders(s.visit)
		b = appendFramed(b, s.buf)
		return append(b, byte(s.count))
	}
	return b
}

func (s *scanner) visitHeader(name, value []byte) {
	switch s.mode {
	case opHeaderNames:
		if s.count > 0 {
			s.buf = append(s.buf, 0)
		}
		s.buf = append(s.buf, name...)
		s.count++
	case opHeaderValues:
		if equalFold(name, s.arg) {
			if s.count > 0 {
				s.buf = append(s.buf, 0)
			}
			s.buf = append(s.buf, value...)
			s.count++
		}
	case opCookie:
		if s.count > 0 || !equalFold(name, "Cookie") {
			return
		}
		if v, ok := cookieValue(value, s.arg); ok {
			s.buf = append(s.buf, v...)
			s.count = 1
		}
	}
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
func cookieValue(header []byte, name string) ([]byte, bool) {
	for len(header) > 0 {
		var pair []byte
		pair, header, _ = bytes.Cut(header, []byte(";"))
		k, v, ok := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
		if ok && string(k) == name {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return nil, false
}
