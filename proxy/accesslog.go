package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
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
	h.SetBytesV(HeaderRequestID, dst)
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
func (s *Server) finishRequest(ctx *fasthttp.RequestCtx, tn *tenant, route string, path, rid []byte, clean bool) {
	ctx.Response.Header.SetBytesV(HeaderRequestID, rid)
	d := time.Since(ctx.Time())
	status := ctx.Response.StatusCode()
	if tn != nil {
		tn.m.observe(route, status, d)
	}
	if l := s.opts.AccessLog; l != nil && l.Enabled(context.Background(), slog.LevelInfo) {
		s.logAccess(l, ctx, tn, route, path, rid, status, d, clean)
	}
}

// logAccess writes one line: never headers, cookies, bodies or the query
// string (they carry tokens); the path is the normalised one.
func (s *Server) logAccess(l *slog.Logger, ctx *fasthttp.RequestCtx, tn *tenant, route string, path, rid []byte, status int, d time.Duration, clean bool) {
	var user []byte
	if clean {
		user = ctx.Request.Header.Peek(HeaderUser)
	}
	if path == nil {
		path = ctx.Path() // fasthttp's cleaned path, without the query
	}
	size := ctx.Response.Header.ContentLength()
	if !ctx.Response.IsBodyStream() {
		size = len(ctx.Response.Body())
	}
	var name, upstream string
	if tn != nil {
		name = tn.Name
		if route == "proxy" {
			upstream = upstreamTarget(ctx, tn)
		}
	}
	l.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("request_id", string(rid)),
		slog.String("tenant", name),
		slog.String("user", string(user)),
		slog.String("method", methodString(ctx.Method())),
		slog.String("path", string(path)),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int("bytes", size),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("upstream", upstream),
	)
}

// upstreamTarget names the upstream a proxied request went to: for a pool,
// the member that answered.
func upstreamTarget(ctx *fasthttp.RequestCtx, tn *tenant) string {
	if tn.upstream == nil {
		return ""
	}
	return tn.upstream.member(ctx)
}

// methodString avoids an allocation for the common methods.
func methodString(m []byte) string {
	switch string(m) {
	case fasthttp.MethodGet:
		return fasthttp.MethodGet
	case fasthttp.MethodPost:
		return fasthttp.MethodPost
	case fasthttp.MethodPut:
		return fasthttp.MethodPut
	case fasthttp.MethodDelete:
		return fasthttp.MethodDelete
	case fasthttp.MethodPatch:
		return fasthttp.MethodPatch
	case fasthttp.MethodHead:
		return fasthttp.MethodHead
	case fasthttp.MethodOptions:
		return fasthttp.MethodOptions
	}
	return string(m)
}
