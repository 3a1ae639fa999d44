package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/internal/webhook"
	"github.com/safeclose/safeclose/store"
)

// keptHeaders are the webhook request headers stored with the body.
var keptHeaders = []string{"Plaid-Verification", "Content-Type", "User-Agent"}

// receiveWebhook verifies a Plaid webhook and stores it durably before the 200.
// Invalid → 400/401 and nothing stored; a key lookup that is throttled or
// fails (credentials included), a genuine signature whose iat is outside
// the window (the host clock is off), or store trouble → 503 so Plaid
// retries. A duplicate answers the id of the event first stored.
func (s *Server) receiveWebhook(ctx *fasthttp.RequestCtx, tn *tenant) error {
	start := time.Now()
	if ctx.Request.Header.ContentLength() > s.opts.Webhooks.MaxBodyBytes || len(ctx.PostBody()) > s.opts.Webhooks.MaxBodyBytes {
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "too_large").Inc()
		return ErrTooLarge
	}
	body := ctx.PostBody()
	hdr := ctx.Request.Header.Peek("Plaid-Verification")
	src, _ := clientAddr(ctx) // the unknown-kid limiter tells senders apart (webhook.Verifier); zero if none
	if allow := s.opts.Webhooks.SourceIPs; len(allow) > 0 && !slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(src) }) {
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "source_refused").Inc()
		return ErrWebhookSource
	}
	claims, err := tn.verifier.VerifyFrom(s.base, src, string(hdr), body)
	if err != nil {
		return s.rejectWebhook(tn, err)
	}
	e := store.Entry{
		Tenant:     tn.Name,
		Body:       bytes.Clone(body),
		ReceivedAt: s.now().UTC(),
		BodySHA256: claims.BodySHA256,
	}
	for _, k := range keptHeaders {
		if v := ctx.Request.Header.Peek(k); len(v) > 0 {
			e.Headers = append(e.Headers, store.Header{Name: k, Value: string(v)})
		}
	}
	id, dup, err := s.enqueueCounted(s.intakeContext(start), e)
	if err != nil {
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "store_error").Inc()
		return fmt.Errorf("%w: enqueue webhook: %w", ErrStoreDown, err)
	}
	s.queueDepth()
	if !dup {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	tn.m.webhookStored(dup)
	tn.m.m.intakeSeconds.Observe(time.Since(start).Seconds())
	writeIntakeAnswer(ctx, dup, id)
	return nil
}

// enqueueCounted is Enqueue, counted in s.intakeWaits while it waits (the
// burst signal of paceForIntake); the count is given back even if the
// store panics, so pacing never sticks.
func (s *Server) enqueueCounted(ctx context.Context, e store.Entry) (id string, dup bool, err error) {
	s.intakeWaits.Add(1)
	defer s.intakeWaits.Add(-1)
	return s.db.Enqueue(ctx, e)
}

// intakeTimeout bounds a webhook's wait for the store, to answer well
// inside Plaid's 10 s even if the disk is slow; intakeSlot is how long one
// deadline context is shared by the webhooks that arrive (intakeContext).
const (
	intakeTimeout = 8 * time.Second
	intakeSlot    = 50 * time.Millisecond
)

// intakeDeadline is a deadline context shared by the webhooks of one slot.
type intakeDeadline struct {
	from   int64 // unix nanos the slot began
	ctx    context.Context
	cancel context.CancelFunc // never called: the context ends at its deadline or with s.base
}

// intakeContext returns a context that ends with s.base or between
// intakeTimeout-intakeSlot and intakeTimeout after now. One context serves
// every webhook of a slot instead of a timer and a registration with
// s.base per webhook (issue 12); at most intakeTimeout/intakeSlot are live.
func (s *Server) intakeContext(now time.Time) context.Context {
	n := now.UnixNano()
	d := s.intakeDL.Load()
	if d != nil && n >= d.from && n-d.from < int64(intakeSlot) {
		return d.ctx
	}
	nd := &intakeDeadline{from: n}
	nd.ctx, nd.cancel = context.WithDeadline(s.base, now.Add(intakeTimeout))
	s.intakeDL.CompareAndSwap(d, nd) // a loser still uses its own
	return nd.ctx
}

// writeIntakeAnswer writes the 200 of a stored webhook:
// {"status":"accepted"|"duplicate","id":"…"}, as json.Marshal wrote it
// (the id is the store's, plain ASCII; anything else goes through
// writeJSON).
func writeIntakeAnswer(ctx *fasthttp.RequestCtx, dup bool, id string) {
	status := "accepted"
	if dup {
		status = "duplicate"
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			writeJSON(ctx, fasthttp.StatusOK, struct {
				Status string `json:"status"`
				ID     string `json:"id,omitempty"`
			}{status, id})
			return
		}
	}
	jsonHeader(ctx, fasthttp.StatusOK)
	ctx.Response.ResetBody()
	ctx.Response.AppendBodyString(`{"status":"`)
	ctx.Response.AppendBodyString(status)
	if id != "" {
		ctx.Response.AppendBodyString(`","id":"`)
		ctx.Response.AppendBodyString(id)
	}
	ctx.Response.AppendBodyString(`"}`)
}

func (s *Server) rejectWebhook(tn *tenant, err error) error {
	var ve *webhook.VerifyError
	step := "unknown"
	if errors.As(err, &ve) {
		step = ve.Step.String()
	}
	if webhook.Unavailable(err) { // throttled, failed or refused credentials: Plaid retries a 503
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "key_unavailable").Inc()
		if n, ok := tn.webhookLogs.Allow(s.now()); ok {
			s.log.Warn("webhook key fetch failed; answering 503 so Plaid retries", "tenant", tn.Name, "err", err, "suppressed_before", n)
		}
		return fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	if skew, ok := webhook.Stale(err); ok {
		// Plaid's signature verified: the clock, not the webhook, is the
		// likely fault. 503 so Plaid retries until it is fixed.
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "clock_skew").Inc()
		if n, report := tn.verifier.ReportStale(s.now()); report {
			s.log.Warn("webhook signed by Plaid but outside its 5-minute iat window; if every webhook says this, the host clock is off (check NTP); answering 503 so Plaid retries",
				"tenant", tn.Name, "skew", skew.Round(time.Second).String(), "refused", n, "err", err)
		}
		return &WebhookRejected{Status: http.StatusServiceUnavailable, Step: step, Err: err}
	}
	status := http.StatusUnauthorized
	if ve != nil && ve.Step == webhook.StepHeader {
		status = http.StatusBadRequest
	}
	tn.m.m.webhooksIn.WithLabelValues(tn.Name, "rejected_"+step).Inc()
	if n, ok := tn.webhookLogs.Allow(s.now()); ok {
		s.log.Warn("webhook rejected", "tenant", tn.Name, "step", step, "err", err, "suppressed_before", n)
	}
	return &WebhookRejected{Status: status, Step: step, Err: err}
}
