package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// errPanic is what a recovered panic becomes: classify maps it to 500
// "internal", like any error it does not know.
var errPanic = errors.New("proxy: recovered a panic")

// Where a panic was recovered: the label of safeclose_panics_total.
const (
	panicPublic  = "public"  // the public fasthttp handler
	panicAdmin   = "admin"   // the admin handler (/healthz, /readyz, /metrics)
	panicWebhook = "webhook" // a webhook queue worker
	panicTunnel  = "tunnel"  // a WebSocket tunnel goroutine
)

// panicLogEvery throttles the panic log: a client that can trigger a panic
// on every request must not be able to flood the log with stacks.
const panicLogEvery = 10 * time.Second

// panics counts and logs recovered panics. One panic must cost one request
// (or one webhook attempt, or one tunnel), never the process.
type panics struct {
	byWhere map[string]prometheus.Counter // read-only once built
	lastLog atomic.Int64                  // unix nanos of the last logged stack
	dropped atomic.Int64                  // panics not logged since then
}

func newPanics(reg *prometheus.Registry) *panics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "safeclose_panics_total", Help: "Panics recovered (the request, webhook attempt or tunnel failed; the process kept serving), by where.",
	}, []string{"where"})
	reg.MustRegister(v)
	p := &panics{byWhere: map[string]prometheus.Counter{}}
	for _, w := range []string{panicPublic, panicAdmin, panicWebhook, panicTunnel} {
		p.byWhere[w] = v.WithLabelValues(w) // present at zero from the start
	}
	return p
}

// note counts a recovered panic v and logs it with its stack, at most once
// per panicLogEvery. Only the panic's type is logged, plus its text when it
// is a runtime error (an index out of range, a nil dereference): a value a
// handler panicked with may hold request data or secrets.
func (s *Server) notePanic(where string, v any) {
	s.panics.byWhere[where].Inc()
	now := time.Now().UnixNano()
	last := s.panics.lastLog.Load()
	if now-last < int64(panicLogEvery) || !s.panics.lastLog.CompareAndSwap(last, now) {
		s.panics.dropped.Add(1)
		return
	}
	attrs := []any{"where", where, "type", fmt.Sprintf("%T", v), "suppressed", s.panics.dropped.Swap(0)}
	if re, ok := v.(runtime.Error); ok {
		attrs = append(attrs, "err", re.Error())
	}
	attrs = append(attrs, "stack", string(debug.Stack()))
	s.log.Error("recovered a panic; the process keeps serving", attrs...)
}

// recoverPublic is deferred once at the top of the public handler. A panic
// answers 500 "internal" (the response is only written after the handler
// returns, so nothing reached the client yet) and closes the connection, as
// part of a streamed request body may still be unread on it.
func (s *Server) recoverPublic(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	s.notePanic(panicPublic, v)
	if ctx.Hijacked() {
		return // a WebSocket answer is written by the hijack handler
	}
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	writeError(ctx, errPanic)
}

// recoverAdmin wraps the admin handler: a panic answers 500 "internal" when
// no header was written yet. http.ErrAbortHandler keeps its meaning.
func (s *Server) recoverAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &adminWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared as net/http does
				panic(v)
			}
			s.notePanic(panicAdmin, v)
			if !rw.wrote {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":{"code":"internal","message":"internal error"}}`))
			}
		}()
		h.ServeHTTP(rw, r)
	})
}

// adminWriter notes whether the header was written.
type adminWriter struct {
	http.ResponseWriter
	wrote bool
}

func (a *adminWriter) WriteHeader(code int) { a.wrote = true; a.ResponseWriter.WriteHeader(code) }

func (a *adminWriter) Write(b []byte) (int, error) {
	a.wrote = true
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flush,
// deadlines).
func (a *adminWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// recoverTo is deferred in background goroutines (webhook work, tunnels):
// it counts and logs a panic and stores errPanic in *err when err is not nil.
func (s *Server) recoverTo(where string, err *error) {
	v := recover()
	if v == nil {
		return
	}
	s.notePanic(where, v)
	if err != nil {
		*err = errPanic
	}
}
