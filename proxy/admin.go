package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves /healthz (the process is up), /readyz (the store is
// open and every tenant's Plaid answers; Plaid probes are cached for 10s) and
// /metrics (Prometheus). Serve it on a private listener.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	rc := &readyCache{}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks, ok := rc.get(r.Context(), s)
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": checks})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

type readyCache struct {
	mu     sync.Mutex
	at     time.Time
	checks map[string]string
	ok     bool
}

func (c *readyCache) get(ctx context.Context, s *Server) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < 10*time.Second && c.checks != nil {
		return c.checks, c.ok
	}
	checks, ok := map[string]string{}, true
	if err := s.db.Ping(); err != nil {
		checks["store"], ok = "unavailable", false
	} else {
		checks["store"] = "ok"
	}
	for name, tn := range s.table.Load().tenants {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := tn.plaid.ping(pctx); err != nil {
			checks["plaid:"+name], ok = "unreachable", false
		} else {
			checks["plaid:"+name] = "ok"
		}
		cancel()
		if err := tn.verifier.KeyFetchHealth(); err != nil { // Issue 9.8: wrong Plaid credentials
			checks["webhook_keys:"+name], ok = "credentials_refused", false
		}
	}
	c.at, c.checks, c.ok = time.Now(), checks, ok
	return checks, ok
}
