package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are Safeclose's Prometheus series. Per-tenant children are
// resolved once so the request path does no label lookups for hot routes.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	webhooksIn    *prometheus.CounterVec
	webhooksDone  *prometheus.CounterVec
	forwards      *prometheus.CounterVec
	persistFailed *prometheus.CounterVec
	queueDepth    prometheus.Gauge
	orphans       prometheus.Gauge
	intakeSeconds prometheus.Histogram
	paced         prometheus.Counter
	duration      *prometheus.HistogramVec
	accessDropped prometheus.Counter

	mu      sync.Mutex
	tenants map[string]*tenantMetrics
}

type tenantMetrics struct {
	name string
	m    *metrics
	// proxy2xx etc. are pre-resolved children for the proxied hot path.
	proxy [6]prometheus.Counter
	// proxyDur and routeDur are the latency histogram's children for the
	// proxied route and the own routes; routeDur is read-only once built.
	proxyDur prometheus.Observer
	routeDur map[string]prometheus.Observer
	// routeReqs are the requests counter's children for the own routes by
	// status class, and webhookIn webhooksIn's for a stored webhook's two
	// answers (accepted, duplicate): resolved at first use, not up front, so
	// /metrics shows the same series as before; the map is read-only once
	// built (issue 12: label lookups on every webhook).
	routeReqs map[string]*[6]lazyCounter
	webhookIn [2]lazyCounter
}

// lazyCounter is a counter child resolved once, at first use.
type lazyCounter struct {
	p atomic.Pointer[prometheus.Counter]
}

// get returns the child, resolving it with resolve the first time
// (concurrent first calls resolve the same child).
func (l *lazyCounter) get(resolve func() prometheus.Counter) prometheus.Counter {
	if c := l.p.Load(); c != nil {
		return *c
	}
	c := resolve()
	l.p.Store(&c)
	return c
}

// webhookStored counts a stored webhook's answer: accepted, or duplicate.
func (t *tenantMetrics) webhookStored(dup bool) {
	i, result := 0, "accepted"
	if dup {
		i, result = 1, "duplicate"
	}
	t.webhookIn[i].get(func() prometheus.Counter { return t.m.webhooksIn.WithLabelValues(t.name, result) }).Inc()
}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_requests_total", Help: "Requests by tenant, route and status class.",
		}, []string{"tenant", "route", "class"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_auth_failures_total", Help: "Authenticator failures that failed closed, by reason.",
		}, []string{"tenant", "reason"}),
		webhooksIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_webhooks_received_total", Help: "Plaid webhooks received, by result.",
		}, []string{"tenant", "result"}),
		webhooksDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_webhooks_processed_total", Help: "Webhook queue entries processed, by outcome.",
		}, []string{"tenant", "outcome"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_webhook_forwards_total", Help: "Events forwarded to tenant destinations, by result.",
		}, []string{"tenant", "destination", "result"}),
		persistFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safeclose_exchange_not_persisted_total", Help: "Exchanges whose access token could not be stored, by reason.",
		}, []string{"tenant", "reason"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safeclose_webhook_queue_depth", Help: "Webhook entries waiting or leased (updated on every enqueue and outcome).",
		}),
		orphans: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safeclose_orphan_items", Help: "Possibly billable Plaid items nobody holds (`safeclose items orphans` lists them).",
		}),
		intakeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safeclose_webhook_intake_seconds", Help: "Time from webhook arrival to its durable 200.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		paced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safeclose_webhook_paced_seconds_total", Help: "Time webhook workers rested so that a burst of webhooks is answered first (webhooks.intake_first_at).",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "safeclose_request_duration_seconds", Help: "Time from request read to answer, by tenant and route (proxy or an own route).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant", "route"}),
		accessDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safeclose_access_log_dropped_total", Help: "Access log lines dropped because the log's buffer was full (its destination is slower than the requests).",
		}),
		tenants: map[string]*tenantMetrics{},
		reg:     reg,
	}
	reg.MustRegister(m.requests, m.authFailures, m.webhooksIn, m.webhooksDone, m.forwards,
		m.persistFailed, m.queueDepth, m.intakeSeconds, m.paced, m.orphans, m.duration, m.accessDropped)
	return m
}

func (m *metrics) tenant(name string) *tenantMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tenants[name]; ok {
		return t
	}
	t := &tenantMetrics{name: name, m: m}
	for i := range t.proxy {
		t.proxy[i] = m.requests.WithLabelValues(name, "proxy", strconv.Itoa(i)+"xx")
	}
	t.proxyDur = m.duration.WithLabelValues(name, "proxy")
	t.routeDur = map[string]prometheus.Observer{}
	t.routeReqs = map[string]*[6]lazyCounter{}
	for _, r := range []string{pathLinkToken, pathExchange, pathStatus, pathWebhook} {
		t.routeDur[r] = m.duration.WithLabelValues(name, r)
		t.routeReqs[r] = new([6]lazyCounter)
	}
	m.tenants[name] = t
	return t
}

// observe counts a request by status class and records its latency.
func (t *tenantMetrics) observe(route string, status int, d time.Duration) {
	c := status / 100
	if c < 0 || c > 5 {
		c = 0
	}
	if route == "proxy" {
		t.proxy[c].Inc()
		t.proxyDur.Observe(d.Seconds())
		return
	}
	if rs, ok := t.routeReqs[route]; ok {
		rs[c].get(func() prometheus.Counter { return t.m.requests.WithLabelValues(t.name, route, strconv.Itoa(c)+"xx") }).Inc()
	} else {
		t.m.requests.WithLabelValues(t.name, route, strconv.Itoa(c)+"xx").Inc()
	}
	if o, ok := t.routeDur[route]; ok {
		o.Observe(d.Seconds())
	} else {
		t.m.duration.WithLabelValues(t.name, route).Observe(d.Seconds())
	}
}
