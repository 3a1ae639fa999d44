package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"
)

// HeaderRequestID carries the request id: to the upstream, and back to the
// client on every response Safeclose sends.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLen bounds a kept incoming id.
const maxRequestIDLen = 128

// requestID returns the request's id, appended to dst, and leaves it as the
// request's only X-Request-Id (so the upstream gets it). An incoming id is
// kept only when Options.TrustRequestID is set and it is one header of
// 1..128 bytes of [A-Za-z0-9._:+/=@-]; otherwise a new one is generated and
// every client copy, name variants (X_Request_Id) included, is dropped.
// See RATIONALE.md "Why request ids are generated unless trusted".
func (s *Server) requestID(h *fasthttp.RequestHeader, dst []byte) []byte {
	var in []byte
	n, variants := 0, false
	for k, v := range h.All() {
		if foldEqual(k, "x-request-id") {
			n++
			if bytes.EqualFold(k, []byte(HeaderRequestID)) {
				in = v
			} else {
				variants = true
			}
		}
	}
	if n == 1 && in != nil && s.opts.TrustRequestID && validRequestID(in) {
		return append(dst, in...)
	}
	if variants || n > 1 {
		var del [][]byte
		for k := range h.All() {
			if foldEqual(k, "x-request-id") {
				del = append(del, append([]byte(nil), k...))
			}
		}
		for _, k := range del {
			h.DelBytes(k)
		}
	}
	dst = appendNewRequestID(dst)
	h.SetCanonical(keyRequestID, dst)
	return dst
}

// appendNewRequestID appends 16 random bytes as 32 hex digits. The ids are
// unique and unpredictable enough to correlate logs; they are not secrets.
func appendNewRequestID(dst []byte) []byte {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.AppendEncode(dst, b[:])
}

func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > maxRequestIDLen {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '/' || c == '=' || c == '@':
		default:
			return false
		}
	}
	return true
}

// finishRequest runs once per request after the handler's answer is set: the
// response gets the request id, the tenant's counters and latency
// histogram are updated, and the access log line is written. tn is nil for
// unknown hosts; path is the normalised path and clean reports that
// sanitizeRequest ran (so X-Safeclose-User, if any, was set by Safeclose);
// both are unset when the request was refused before.
//
// start is monoNow when handle began: the latency is read on the monotonic
// clock alone (one clock read at each end; the server runs with
// LazyRequestTime, so fasthttp reads none), and the wall clock only for an
// access log line.
func (s *Server) finishRequest(ctx *fasthttp.RequestCtx, tn *tenant, route string, path, rid []byte, clean bool, start time.Duration) {
	ctx.Response.Header.SetCanonical(keyRequestID, rid)
	d := monoNow() - start
	status := ctx.Response.StatusCode()
	if tn != nil {
		tn.m.observe(route, status, d)
	}
	if s.access != nil {
		s.logAccess(ctx, tn, route, path, rid, status, time.Now(), d, clean)
	}
}

// logAccess queues one line: never headers, cookies, bodies or the query
// string (they carry tokens); the path is the normalised one. The line is
// encoded on the stack and copied into the access log's buffer.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, tn *tenant, route string, path, rid []byte, status int, now time.Time, d time.Duration, clean bool) {
	r := accessRecord{time: now, requestID: rid, method: ctx.Method(), route: route, status: status, duration: d}
	if clean {
		r.user = ctx.Request.Header.Peek(HeaderUser)
	}
	r.path = path
	if path == nil {
		r.path = ctx.Path() // fasthttp's cleaned path, without the query
	}
	r.client, _ = clientAddr(ctx)
	r.bytes = ctx.Response.Header.ContentLength()
	if !ctx.Response.IsBodyStream() {
		r.bytes = len(ctx.Response.Body())
	}
	if tn != nil {
		r.tenant = tn.Name
		if route == "proxy" {
			r.upstream = upstreamTarget(ctx, tn)
		}
	}
	var buf [1024]byte
	s.access.add(appendAccessLine(buf[:0], &r))
}

// upstreamTarget names the upstream a proxied request went to: for a pool,
// the member that answered.
func upstreamTarget(ctx *fasthttp.RequestCtx, tn *tenant) string {
	if tn.upstream == nil {
		return ""
	}
	return tn.upstream.member(ctx)
}
