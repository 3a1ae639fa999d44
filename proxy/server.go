package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/internal/loglimit"
	"github.com/safeclose/safeclose/internal/webhook"
)

// Server is the public fasthttp listener plus the webhook workers.
// It is safe for concurrent use; Reload may be called while serving.
type Server struct {
	depthAt      atomic.Int64                   // unix nanos of the last queue depth read (webhook_worker.go)
	depthPending atomic.Bool                    // a trailing queue depth read is scheduled
	depthGap     atomic.Int64                   // nanos to wait after the last queue depth read (depthGap)
	intakeDL     atomic.Pointer[intakeDeadline] // webhook_intake.go
	intakeWaits  atomic.Int32                   // verified webhooks waiting for the store (paceForIntake)
	sched        schedWatch                     // is the process short of CPU (paceForIntake)
	pacedLog     atomic.Int64                   // unix nanos of the last "forwarding paced" log line
	opts         Options
	log          *slog.Logger
	db           Store
	http         *http.Client
	fwd          forwardClients // webhook_worker.go: one pooled client per destination host
	delivered    deliveries     // webhook_worker.go: destinations a retried event already reached
	now          func() time.Time
	metrics      *metrics
	panics       *panics    // recover.go
	conns        *connLimit // connlimit.go
	clock        *connClock // connclock.go: the client connections' timeouts
	budget       *plaidBudget
	access       *accessLog // nil: no access log (accesslog_writer.go)
	fs           *fasthttp.Server

	table atomic.Pointer[table]

	base    context.Context // cancelled by Shutdown; parent of all background work
	cancel  context.CancelFunc
	workers sync.WaitGroup
	wake    chan struct{} // intake → workers: new entries are due
	started atomic.Bool

	// Listeners given to Serve, and whether Shutdown has begun. fasthttp
	// learns of a listener only once its Serve runs: a Shutdown that came
	// first found none, returned, and the listener then served for ever
	// (a SIGTERM at the end of start-up hung the process, serving with
	// its plugins closed). Shutdown closes these itself.
	lnMu sync.Mutex
	lns  []net.Listener
	down bool
}

// table is an immutable routing snapshot; Reload swaps it atomically.
type table struct {
	byHost  map[string]*tenant
	tenants map[string]*tenant
}

// tenant is a Tenant plus what the server builds for it.
type tenant struct {
	Tenant
	plaid    *plaidClient
	verifier *webhook.Verifier
	upstream *pool // nil: no reverse proxy
	// bufferBody: the authenticator may read the request body, so bodies
	// are read whole before it runs instead of streaming (stream_request.go).
	bufferBody bool
	ws         *tunnels // open WebSocket tunnels; carried over by Reload
	m          *tenantMetrics
	checks     []readyCheck // see readyChecks in admin.go
	// Log lines any client can cause at request rate (a failed request,
	// a refused webhook): one a second of each per tenant, the next saying
	// how many were suppressed. The log is one stream for every tenant, so
	// a line per request let one tenant's flood drown the others' lines
	// (TestNoisyErrorsDoNotFloodTheLog); the access log and the metrics
	// still count every request.
	failLogs, webhookLogs loglimit.Limiter
}

// New builds a Server. It does not listen; call Serve.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("proxy: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.PlaidTimeout == 0 {
		opts.PlaidTimeout = DefaultPlaidTimeout
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxHeaderBytes == 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.PlaidCallsPerUser == 0 {
		opts.PlaidCallsPerUser = DefaultPlaidCallsPerUser
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	applyPassThroughDefaults(&opts)
	w := &opts.Webhooks
	if w.MaxBodyBytes == 0 {
		w.MaxBodyBytes = DefaultWebhookMaxBodyBytes
	}
	if w.Workers == 0 {
		w.Workers = DefaultWebhookWorkers
	}
	if w.MaxAttempts == 0 {
		w.MaxAttempts = DefaultWebhookMaxAttempts
	}
	if w.Lease == 0 {
		w.Lease = DefaultWebhookLease
	}
	if w.Backoff == 0 {
		w.Backoff = DefaultWebhookBackoff
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = DefaultWebhookMaxBackoff
	}
	if w.Poll == 0 {
		w.Poll = DefaultWebhookPoll
	}
	if w.MaxAge == 0 {
		w.MaxAge = DefaultWebhookMaxAge
	}
	if w.IntakeFirstAt == 0 {
		w.IntakeFirstAt = DefaultWebhookIntakeFirst
	}
	// Plaid calls never follow a redirect (noRedirect): plaid-go sends the
	// tenant's secret as a header, which net/http copies to whatever host
	// a 307 or 308 names, with the body holding an access token. Plaid's
	// API does not redirect; one that does is answered as an error.
	hc := &http.Client{Timeout: opts.PlaidTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = noRedirect
	s := &Server{
		opts: opts, log: opts.Logger, db: opts.Store, http: hc, now: opts.Now,
		metrics: newMetrics(opts.Registry),
		wake:    make(chan struct{}, 1),
	}
	s.panics = newPanics(s.metrics.reg)
	if h, ok := s.db.(interface{ HeldTotal() uint64 }); ok {
		// Queue entries this process could not check with its keyring
		// (store/entry_auth.go): held, neither delivered nor dead-lettered.
		s.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "safeclose_webhook_queue_held_total",
			Help: "Webhook queue entries held because this process's keyring cannot check them (no keys, a key it lacks, keys that do not match the data); each hold lasts a minute.",
		}, func() float64 { return float64(h.HeldTotal()) }))
	}
	s.conns = newConnLimit(opts.MaxConns, opts.MaxConnsPerIP, s.metrics.reg, s.log)
	s.clock = newConnClock(opts.ReadTimeout, opts.WriteTimeout, opts.IdleTimeout, s.metrics.reg)
	s.budget = newPlaidBudget(opts.PlaidCallsPerUser)
	if opts.HTTPClient != nil { // forwarding uses it too
		s.fwd.own = hc
	}
	if opts.AccessLog != nil {
		s.access = newAccessLog(opts.AccessLog, opts.AccessLogBuffer, s.metrics.accessDropped)
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	t, err := s.buildTable(opts.Tenants)
	if err != nil {
		return nil, err
	}
	s.table.Store(t)
	if os, err := s.db.Orphans(); err == nil { // the gauge starts from the stored count
		s.metrics.orphans.Set(float64(len(os)))
	}
	s.reportPendingIntents(s.sharedStore()) // Issue 9.7
	s.fs = &fasthttp.Server{
		Handler: s.handle,
		Name:    "safeclose",
		// No ReadTimeout, WriteTimeout or IdleTimeout here: s.clock keeps
		// them (connclock.go), without fasthttp's three deadline changes
		// a request.
		MaxRequestBodySize: max(opts.MaxBodyBytes, w.MaxBodyBytes),
		// The read buffer bounds the request line and headers: fasthttp's
		// default, 4 KiB, answered a browser with a few KiB of cookies or a
		// large bearer token 400 malformed_request.
		ReadBufferSize:                opts.MaxHeaderBytes,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		// handle reads the clock itself (monoNow, for the latency), so
		// fasthttp does not read it for RequestCtx.Time, which nothing uses.
		LazyRequestTime:   true,
		ReduceMemoryUsage: false,
		CloseOnShutdown:   true,
		// Request bodies stay on the connection until a handler reads them
		// (stream_request.go); multipart bodies are proxied, not parsed.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		Logger:                       fasthttpLogger{s.log},
		ErrorHandler:                 s.parseError,
		ConnState:                    s.connState,
	}
	return s, nil
}

// parseError answers requests fasthttp could not read, in our JSON format.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, ErrTooLarge)
		return
	}
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		writeError(ctx, ErrHeadersTooLarge)
		return
	}
	writeError(ctx, badRequest("malformed_request", "the HTTP request could not be parsed"))
}

type fasthttpLogger struct{ l *slog.Logger }

// Printf logs fasthttp's message without its arguments: for a request it
// could not parse, fasthttp's error quotes the raw request bytes, headers
// and credentials included (second trust pass; the server has no
// SecureErrorLogMessage). The format names the event; the client got 400.
func (f fasthttpLogger) Printf(format string, _ ...any) {
	f.l.Debug("fasthttp", "event", format)
}

func (s *Server) buildTable(ts []Tenant) (*table, error) {
	if len(ts) == 0 {
		return nil, errors.New("proxy: no tenants")
	}
	t := &table{byHost: map[string]*tenant{}, tenants: map[string]*tenant{}}
	for _, tc := range ts {
		if tc.Unavailable != nil {
			if err := t.add(&tenant{Tenant: tc, m: s.metrics.tenant(tc.Name), ws: &tunnels{}}); err != nil {
				return nil, err
			}
			continue
		}
		if tc.Auth == nil {
			return nil, fmt.Errorf("proxy: tenant %q: no authenticator", tc.Name)
		}
		if _, dup := t.tenants[tc.Name]; dup {
			return nil, fmt.Errorf("proxy: duplicate tenant %q", tc.Name)
		}
		if pa, ok := tc.Auth.(*PluginAuth); ok && pa.OnFailure == nil {
			name, failures := tc.Name, s.metrics.authFailures
			pa.OnFailure = func(reason string) { failures.WithLabelValues(name, reason).Inc() }
		}
		tn := &tenant{Tenant: tc, plaid: newPlaidClient(tc.Plaid, s.http), m: s.metrics.tenant(tc.Name), ws: &tunnels{}}
		v, err := webhook.NewVerifier(webhook.Options{
			Fetch: func(ctx context.Context, kid string) (webhook.Key, error) {
				ctx, cancel := context.WithTimeout(ctx, s.opts.PlaidTimeout)
				defer cancel()
				return tn.plaid.webhookKey(ctx, kid)
			},
			Now:    s.now,
			MaxAge: s.opts.Webhooks.MaxAge,
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: tenant %q: %w", tc.Name, err)
		}
		tn.verifier = v
		up, err := newPool(tc, s.now)
		if err != nil {
			return nil, fmt.Errorf("proxy: tenant %q: %w", tc.Name, err)
		}
		tn.upstream = up
		if br, ok := tc.Auth.(bodyReader); ok {
			tn.bufferBody = br.ReadsBody()
		}
		tn.checks = tn.readyChecks()
		if err := t.add(tn); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// add registers tn by name and by each of its hosts.
func (t *table) add(tn *tenant) error {
	if _, dup := t.tenants[tn.Name]; dup {
		return fmt.Errorf("proxy: duplicate tenant %q", tn.Name)
	}
	t.tenants[tn.Name] = tn
	for _, h := range tn.Hosts {
		h = strings.ToLower(h)
		if o, dup := t.byHost[h]; dup {
			return fmt.Errorf("proxy: host %q claimed by %q and %q", h, o.Name, tn.Name)
		}
		t.byHost[h] = tn
	}
	return nil
}

// Reload swaps in a new tenant table atomically. Requests and webhook
// events in flight finish on the tenant they picked, old or new; the caller
// closes the old tenants' plugins only once ReloadGrace has passed (a
// plugin's Close then still waits for the calls in flight).
func (s *Server) Reload(ts []Tenant) error {
	t, err := s.buildTable(ts)
	if err != nil {
		return err
	}
	adoptTunnels(t, s.table.Load())
	old := s.table.Swap(t)
	if old != nil {
		closeRemoved(old, t)
	}
	s.log.Info("config reloaded", "tenants", len(ts))
	return nil
}

// reloadMargin is what ReloadGrace adds to the bounds it covers. A request
// that does not read its body whole authenticates as soon as it is routed,
// within the margin alone; it also absorbs the moments between picking the
// table and the start of those bounds (routing a request, decoding a
// webhook body before its attempt's deadline is set).
const reloadMargin = time.Second

// ReloadGrace is how long after Reload the caller must keep the old tenants'
// plugins open: the longest a request or a webhook event that picked the old
// table can hold it before it calls the tenant's plugins, plus reloadMargin.
// It covers:
//   - a Plaid route (/api/plaid/...), which reads the whole request body
//     before it authenticates, and a proxied request of a tenant whose auth
//     plugin may read the body (buffered first): Options.ReadTimeout, for a
//     body that has arrived in full within ReadTimeout of the request being
//     routed;
//   - a webhook worker, which calls the tenant's event plugins after Plaid's
//     /item/get: the attempt's deadline, PlaidTimeout + 10s (eventTimeout),
//     after which the worker calls no plugin (the attempt fails and is
//     retried, as it would at its forwards).
//
// With the defaults it is 26s. It does not cover a body that keeps arriving
// for longer than ReadTimeout: each read of it waits up to ReadTimeout for
// more, so a body trickled (or sent slowly) may reach its plugin after the
// grace; that plugin is closed by then, and the request fails closed with
// 503 auth_unavailable.
func (s *Server) ReloadGrace() time.Duration {
	return max(s.opts.ReadTimeout, s.eventTimeout()) + reloadMargin
}

// Serve accepts connections on ln and starts the webhook workers. It returns
// nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.down {
		s.lnMu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	if s.started.CompareAndSwap(false, true) {
		s.startWorkers() // under lnMu: its workers.Add precedes Shutdown's Wait
		s.workers.Add(1)
		go func() { // after fasthttp's Shutdown: the connections it waits for are still timed
			defer s.workers.Done()
			s.clock.run(s.base)
		}()
		if s.sharedStore() {
			s.workers.Add(1)
			go s.sweepIntents()
		}
	}
	s.lnMu.Unlock()
	err := s.fs.Serve(retryListener{Listener: ln, log: s.log, logs: new(loglimit.Limiter), lim: s.conns})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// retryListener keeps accepting through errors that pass, as net/http's
// Serve does: fasthttp's Serve returns on any accept error but a timeout,
// so a process out of file descriptors (EMFILE under a flood of
// connections) stopped serving and exited. It waits 5 ms, doubling up to
// 1 s, between tries; a closed listener still ends Accept at once.
// Under a sustained flood every Accept meets the error again, so its
// warning is rate-limited (one a second, with how many were suppressed).
//
// It also applies the connection bounds (connlimit.go): a connection over
// one is refused here, and Accept goes on to the next.
type retryListener struct {
	net.Listener
	log  *slog.Logger
	logs *loglimit.Limiter
	lim  *connLimit
}

func (l retryListener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			reason := l.lim.admit(c)
			if reason == "" {
				return c, nil
			}
			l.lim.refuse(c, reason)
			continue
		}
		if !acceptRetryable(err) {
			return c, err
		}
		wait = min(max(2*wait, 5*time.Millisecond), time.Second)
		if n, ok := l.logs.Allow(time.Now()); ok {
			l.log.Warn("accept failed; retrying", "err", err, "in", wait, "suppressed_before", n)
		}
		time.Sleep(wait)
	}
}

// acceptRetryable reports accept errors that end when connections close or
// memory frees up.
func acceptRetryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Shutdown stops accepting, waits for in-flight requests (bounded by ctx)
// and stops the workers. A leased webhook left unfinished becomes visible
// again after its lease.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lnMu.Lock()
	s.down = true
	lns := s.lns
	s.lnMu.Unlock()
	err := s.fs.ShutdownWithContext(ctx)
	for _, ln := range lns { // fasthttp closed those it knew of
		ln.Close()
	}
	t := s.table.Load()
	closeTunnels(t) // hijacked connections are not the server's any more
	closeUpstreams(t)
	s.cancel()
	done := make(chan struct{})
	go func() { s.workers.Wait(); waitTunnels(t); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if s.access != nil { // after the last request: its line is flushed too
		if aerr := s.access.close(ctx); err == nil {
			err = aerr
		}
	}
	return err
}

// tenantFor finds the tenant by Host (port and case ignored) without allocating.
func (t *table) tenantFor(host []byte) *tenant {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.Contains(host[i:], []byte("]")) {
		host = host[:i]
	}
	if tn, ok := t.byHost[string(host)]; ok {
		return tn
	}
	var buf [256]byte
	if len(host) > len(buf) {
		return nil
	}
	low := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	if tn, ok := t.byHost[string(low)]; ok {
		return tn
	}
	return t.wildcardFor(low)
}

// wildcardFor finds the tenant of a "*." host one label above the
// lower-cased host ("a.apps.example" → "*.apps.example"), without allocating.
func (t *table) wildcardFor(low []byte) *tenant {
	i := bytes.IndexByte(low, '.')
	if i <= 0 || len(low)-i+1 > 256 {
		return nil
	}
	var buf [256]byte
	w := append(append(buf[:0], '*'), low[i:]...)
	return t.byHost[string(w)]
}

const (
	pathLinkToken = "/api/plaid/link-token"
	pathExchange  = "/api/plaid/exchange"
	pathStatus    = "/api/plaid/status"
	pathWebhook   = "/api/webhooks/plaid"
)

// connState is fasthttp's ConnState hook.
func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	s.conns.connState(c, st)
	s.clock.connState(c, st)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	cr := s.clock.rec(ctx.Conn())
	cr.set(phBusy)             // the head is read; the handler's waits have their own bounds
	defer cr.set(phWrite)      // the answer goes out next (after recoverPublic's 500, if it comes to that)
	defer s.recoverPublic(ctx) // a panic costs this request, not the process
	start := monoNow()
	var ridBuf [maxRequestIDLen]byte
	rid := s.requestID(&ctx.Request.Header, ridBuf[:0])
	// One normalised path, one host and clean headers for routing, the
	// auth plugin and the upstream alike (issue 9.1, 9.4). The tenant is
	// picked from the host only once the target is normalised: fasthttp
	// reads an authority out of an origin-form target that starts with
	// "//" and holds "://" anywhere ("//t1.test/x?u=http://z"), which the
	// normalised target no longer has, so routing picked t1 while its
	// upstream got the Host of the tenant the client named.
	path, err := canonicalizeTarget(ctx)
	tn := s.table.Load().tenantFor(canonicalHost(ctx))
	if tn == nil {
		writeError(ctx, ErrUnknownHost)
		s.finishRequest(ctx, nil, "", nil, rid, false, start)
		return
	}
	if err == nil {
		err = sanitizeRequest(&ctx.Request.Header)
	}
	if err != nil {
		writeError(ctx, err)
		s.finishRequest(ctx, tn, "proxy", nil, rid, false, start)
		return
	}
	var route string
	switch {
	case tn.Unavailable != nil: // fails closed (issue 9.15)
		route, err = "unavailable", ErrTenantUnavailable
	case len(path) > 5 && string(path[:5]) == "/api/" && isOwnRoute(path):
		route = string(path)
		err = s.ownRoute(ctx, tn, route)
	case ctx.Request.Header.ContentLength() > s.opts.MaxBodyBytes:
		// A declared size over the cap is refused before anything is read
		// (a small one is read and dropped first, so the client gets the
		// 413 rather than a reset); a chunked body is counted as it streams
		// (stream_request.go).
		s.linger(ctx, ctx.Request.BodyStream(), ctx.Request.Header.ContentLength())
		ctx.SetConnectionClose()
		route, err = "proxy", ErrTooLarge
	default:
		route = "proxy"
		err = s.proxyRequest(ctx, tn)
	}
	if err != nil {
		writeError(ctx, err)
		if errors.Is(err, ErrPlaidBudget) {
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(s.budget.retryAfter()))
		}
		status, _ := classify(err)
		if status >= 500 && !loggedThrottled(err) {
			if n, ok := tn.failLogs.Allow(s.now()); ok {
				s.log.Warn("request failed", "tenant", tn.Name, "route", route, "status", status, "request_id", string(rid), "err", err,
					"suppressed_before", n)
			}
		}
	}
	s.finishRequest(ctx, tn, route, path, rid, true, start)
}

// loggedThrottled reports 5xx answers whose cause is logged elsewhere,
// rate-limited, so that a flood of them adds no line each: plugin failures
// (PluginAuth), broken tenants (at build), and genuine webhooks refused for
// a stale iat (the intake's clock warning).
func loggedThrottled(err error) bool {
	if errors.Is(err, ErrAuthUnavailable) || errors.Is(err, ErrTenantUnavailable) {
		return true
	}
	var wr *WebhookRejected
	return errors.As(err, &wr) && wr.Status == http.StatusServiceUnavailable
}

func isOwnRoute(p []byte) bool {
	switch string(p) {
	case pathLinkToken, pathExchange, pathStatus, pathWebhook:
		return true
	}
	return false
}

func (s *Server) ownRoute(ctx *fasthttp.RequestCtx, tn *tenant, route string) error {
	limit := s.bufferLimit()
	if route == pathWebhook {
		limit = s.opts.Webhooks.MaxBodyBytes
	}
	if err := s.bufferBody(ctx, limit); err != nil {
		return err
	}
	if route == pathWebhook {
		if !ctx.IsPost() {
			return ErrMethod
		}
		return s.receiveWebhook(ctx, tn)
	}
	wantGet := route == pathStatus
	if (wantGet && !ctx.IsGet()) || (!wantGet && !ctx.IsPost()) {
		return ErrMethod
	}
	// The status route too: it is not free of side effects (an item in
	// login_required is checked at Plaid, which spends the user's Plaid
	// budget), so a page elsewhere loading it as an image with the
	// victim's cookie could spend that budget and block the victim's
	// "Reconnect" (429).
	if crossOrigin(&ctx.Request.Header, ctx.IsTLS()) {
		return ErrCrossOrigin
	}
	id, err := tn.Auth.Authenticate(s.base, ctx)
	if err != nil {
		return err
	}
	if s.access != nil {
		ctx.Request.Header.Set(HeaderUser, id.Subject) // for the access log only; never forwarded
	}
	if len(ctx.PostBody()) > s.opts.MaxBodyBytes {
		return ErrTooLarge
	}
	switch route {
	case pathLinkToken:
		return s.linkToken(ctx, tn, id)
	case pathExchange:
		return s.exchange(ctx, tn, id)
	default:
		return s.status(ctx, tn, id)
	}
}
