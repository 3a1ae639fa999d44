package hostabi

import (
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

// scanner computes read values with the same header visitor the host
// functions use, so a cached answer is what the host function would return.
type scanner struct {
	hv headerVisitor[string]
}

func newScanner() *scanner {
	s := &scanner{}
	s.hv.init(256)
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
		s.hv.run(r, rd.op, rd.arg)
		b = appendFramed(b, s.hv.out)
		return append(b, byte(s.hv.count))
	}
	return b
}
