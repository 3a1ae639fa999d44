package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/safeclose/safeclose/internal/webhook"
	"github.com/safeclose/safeclose/store"
)

// keptHeaders are the webhook request headers stored with the body.
var keptHeaders = []string{"Plaid-Verification", "Content-Type", "User-Agent"}

// receiveWebhook verifies a Plaid webhook and stores it durably before the 200.
// Invalid → 400/401 and nothing stored; a key lookup that is throttled or
// fails (credentials included) or store trouble → 503 so Plaid retries. A
// duplicate answers the id of the event first stored.
func (s *Server) receiveWebhook(ctx *fasthttp.RequestCtx, tn *tenant) error {
	start := time.Now()
	if ctx.Request.Header.ContentLength() > s.opts.Webhooks.MaxBodyBytes || len(ctx.PostBody()) > s.opts.Webhooks.MaxBodyBytes {
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "too_large").Inc()
		return ErrTooLarge
	}
	body := ctx.PostBody()
	hdr := ctx.Request.Header.Peek("Plaid-Verification")
	claims, err := tn.verifier.Verify(s.base, string(hdr), body)
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
	// Answer well inside Plaid's 10 s even if the disk is slow.
	ectx, cancel := context.WithTimeout(s.base, 8*time.Second)
	defer cancel()
	id, dup, err := s.db.Enqueue(ectx, e)
	if err != nil {
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "store_error").Inc()
		return fmt.Errorf("%w: enqueue webhook: %w", ErrStoreDown, err)
	}
	s.queueDepth()
	result := "accepted"
	if dup {
		result = "duplicate"
	} else {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	tn.m.m.webhooksIn.WithLabelValues(tn.Name, result).Inc()
	tn.m.m.intakeSeconds.Observe(time.Since(start).Seconds())
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Status string `json:"status"`
		ID     string `json:"id,omitempty"`
	}{result, id})
	return nil
}

func (s *Server) rejectWebhook(tn *tenant, err error) error {
	var ve *webhook.VerifyError
	step := "unknown"
	if errors.As(err, &ve) {
		step = ve.Step.String()
	}
	if webhook.Unavailable(err) { // throttled, failed or refused credentials: Plaid retries a 503
		tn.m.m.webhooksIn.WithLabelValues(tn.Name, "key_unavailable").Inc()
		s.log.Warn("webhook key fetch failed; answering 503 so Plaid retries", "tenant", tn.Name, "err", err)
		return fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	status := http.StatusUnauthorized
	if ve != nil && ve.Step == webhook.StepHeader {
		status = http.StatusBadRequest
	}
	tn.m.m.webhooksIn.WithLabelValues(tn.Name, "rejected_"+step).Inc()
	s.log.Warn("webhook rejected", "tenant", tn.Name, "step", step, "err", err)
	return &WebhookRejected{Status: status, Step: step, Err: err}
}
