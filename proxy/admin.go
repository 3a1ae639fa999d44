package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/safeclose/safeclose/internal/webhook"
	"github.com/safeclose/safeclose/store"
)

// AdminHandler serves /healthz (the process is up), /readyz and /metrics
// (Prometheus), and /debug/pprof/ when Options.AdminPprof is set. Serve it
// on a private listener.
//
// /readyz answers 200 when the process can serve: the store takes a synced
// write and reads it back, the sealing key seals and opens a probe, and at
// least one tenant was built. Otherwise 503. Each tenant's own checks
// (Plaid reachable, plugins loaded, …) are reported in the body and never
// make the whole process unready: one tenant's Plaid outage must not take
// every tenant out of a load balancer. /readyz?tenant=NAME answers 503 unless
// the process and that tenant are both ready (404 for an unknown tenant), for
// a per-tenant health check. Results are cached for 10s; see RATIONALE.md
// "Why /readyz is per tenant".
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	rc := &readyCache{}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Probes outlive a caller that hangs up: their result is cached for all.
		rep := rc.get(context.WithoutCancel(r.Context()), s)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		ok := rep.Ready
		if name := r.URL.Query().Get("tenant"); name != "" {
			tr, found := rep.Tenants[name]
			if !found {
				w.WriteHeader(http.StatusNotFound)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unknown_tenant", "message": "no such tenant"}})
				return
			}
			ok = ok && tr.Ready
		}
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	if s.opts.AdminPprof { // opt-in (admin_pprof: true); issue 12.1
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return s.recoverAdmin(mux)
}

// readyCheck is one named per-tenant readiness check. Its error is shown
// only as a fixed status word (checkStatus), never as text.
type readyCheck struct {
	name string
	run  func(context.Context) error
}

// readyChecks lists tn's readiness checks; each becomes tenants.NAME.checks.
// A per-tenant dependency gets its check here (for example the webhook
// verifier's key-fetch health: {"webhook_keys", func(context.Context) error
// { return tn.verifier.KeyFetchHealth() }}).
func (tn *tenant) readyChecks() []readyCheck {
	return []readyCheck{
		{"plaid", tn.plaid.ping},
		// Issue 9.8: Plaid refusing the tenant's credentials for the
		// webhook key fetch makes every genuine webhook a 503.
		{"webhook_keys", func(context.Context) error { return tn.verifier.KeyFetchHealth() }},
	}
}

// readyReport is the /readyz body.
type readyReport struct {
	Ready   bool                    `json:"ready"`
	Checks  map[string]string       `json:"checks"`
	Tenants map[string]tenantReport `json:"tenants"`
}

type tenantReport struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

type readyCache struct {
	mu  sync.Mutex
	at  time.Time
	tab *table // the table the report was made for; a reload invalidates it
	rep readyReport
}

const readyTTL = 10 * time.Second

func (c *readyCache) get(ctx context.Context, s *Server) readyReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	tab := s.table.Load()
	if c.tab == tab && time.Since(c.at) < readyTTL {
		return c.rep
	}
	c.rep, c.at, c.tab = s.ready(ctx, tab), time.Now(), tab
	return c.rep
}

// ready runs every check once: the shared ones, then each tenant's, tenants
// in parallel (a probe waits at most 3s) so a slow Plaid delays no other.
func (s *Server) ready(ctx context.Context, tab *table) readyReport {
	rep := readyReport{Ready: true, Checks: map[string]string{}, Tenants: map[string]tenantReport{}}
	if err := s.db.ProbeStore(); err != nil {
		rep.Ready, rep.Checks["store"] = false, storeStatus(err)
		s.log.Warn("readiness: store probe failed", "err", err)
	} else {
		rep.Checks["store"] = "ok"
	}
	switch err := s.db.ProbeKey(); {
	case err == nil:
		rep.Checks["sealing_key"] = "ok"
	case errors.Is(err, store.ErrNoKey):
		rep.Ready, rep.Checks["sealing_key"] = false, "no_key"
	case errors.Is(err, store.ErrKeyMismatch):
		rep.Ready, rep.Checks["sealing_key"] = false, "key_mismatch"
	default:
		rep.Ready, rep.Checks["sealing_key"] = false, "unusable"
		s.log.Warn("readiness: sealing key probe failed", "err", err)
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	built := 0
	for name, tn := range tab.tenants {
		if tn.Unavailable != nil {
			mu.Lock()
			rep.Tenants[name] = tenantReport{Checks: map[string]string{"plugins": tn.Unavailable.String()}}
			mu.Unlock()
			continue
		}
		built++
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tr := tenantReport{Ready: true, Checks: map[string]string{"plugins": "ok"}}
			if tn.ReloadRefused != nil {
				tr.Checks["config"] = "stale: reload refused: " + tn.ReloadRefused.String()
			}
			for _, ch := range tn.checks {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := s.runCheck(pctx, ch)
				cancel()
				if err != nil {
					tr.Ready = false
				}
				tr.Checks[ch.name] = checkStatus(err)
			}
			mu.Lock()
			rep.Tenants[name] = tr
			mu.Unlock()
		}()
	}
	wg.Wait()
	if built == 0 {
		rep.Ready, rep.Checks["tenants"] = false, "none_available"
	} else {
		rep.Checks["tenants"] = "ok"
	}
	return rep
}

// runCheck runs one check in a probe goroutine, where a panic would end the
// process: it becomes a failed check instead.
func (s *Server) runCheck(ctx context.Context, ch readyCheck) (err error) {
	defer s.recoverTo(panicAdmin, &err)
	return ch.run(ctx)
}

func storeStatus(err error) string {
	if errors.Is(err, store.ErrClosed) {
		return "closed"
	}
	return "unavailable"
}

// checkStatus turns a check's error into a status word safe to show.
func checkStatus(err error) string {
	var pe *PlaidError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &pe) && !errors.Is(err, ErrPlaidDown):
		return "error: " + pe.Code // Plaid's error code, e.g. INVALID_API_KEYS
	case errors.Is(err, webhook.ErrKeyAuth):
		return "credentials_refused"
	case errors.Is(err, ErrKeyUnavailable):
		return "key_unavailable"
	}
	return "unreachable"
}
