package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/stdwebhooks"
	"github.com/safeclose/safeclose/store"
)

// plaidEvent is the part of a Plaid webhook the pipeline reads.
type plaidEvent struct {
	WebhookType string `json:"webhook_type"`
	WebhookCode string `json:"webhook_code"`
	ItemID      string `json:"item_id"`
	Error       *struct {
		ErrorCode string `json:"error_code"`
	} `json:"error"`
	ConsentExpirationTime *time.Time `json:"consent_expiration_time"`
}

// errPermanent marks failures that retrying cannot fix: dead-letter at once.
var errPermanent = errors.New("proxy: permanent webhook failure")

// turns is the workers' shared view of who is being worked on: at most
// limit entries per tenant at once, and leases rotate through tenants, so
// one tenant's slow plugin or destination cannot hold every worker nor keep
// another tenant waiting behind its backlog.
type turns struct {
	mu    sync.Mutex
	busy  map[string]int // entries in work, and slots held by leases under way
	last  string         // tenant leased last; the next lease starts after it
	limit int
	// workers is how many there are: a tenant already worked on takes
	// another slot only while one stays free for a tenant that holds none,
	// so two tenants whose destinations hang (each up to limit) cannot
	// hold every worker while a third waits.
	workers int
	// writing bounds the outcomes being recorded in the background (see
	// record): a worker waits for a slot before it records another.
	writing chan struct{}
}

// lease takes the next entry in turn. Workers lease concurrently: on
// PostgreSQL a lease waits for a commit, and concurrent leases share one
// (store/pg writes.go), where leases taken one at a time capped forwarding
// at one lease per commit (issue 12). The per-tenant limit still holds
// exactly: the store asks allow before it leases from a tenant, and allow
// takes one of the tenant's slots for this lease there and then; the slots
// of tenants the lease did not land on are given back when it returns.
func (s *Server) lease(tr *turns, owner string) (store.Entry, bool, error) {
	var held []string // tenants this lease holds a slot of
	allow := func(tenant string) bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if slices.Contains(held, tenant) {
			return true
		}
		if tr.busy[tenant] >= tr.limit || tr.busy[tenant] > 0 && tr.held()+1 >= tr.workers {
			return false
		}
		tr.busy[tenant]++
		held = append(held, tenant)
		return true
	}
	tr.mu.Lock()
	after := tr.last
	tr.mu.Unlock()
	e, ok, err := s.db.LeaseNext(owner, s.opts.Webhooks.Lease, after, allow)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, t := range held {
		if ok && t == e.Tenant {
			continue // the entry's slot, given back by done
		}
		if tr.busy[t]--; tr.busy[t] <= 0 {
			delete(tr.busy, t)
		}
	}
	if ok {
		tr.last = e.Tenant
	}
	return e, ok, err
}

// held is how many slots are held, over every tenant; under tr.mu.
func (tr *turns) held() int {
	n := 0
	for _, b := range tr.busy {
		n += b
	}
	return n
}

func (tr *turns) done(tenant string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.busy[tenant]--; tr.busy[tenant] <= 0 {
		delete(tr.busy, tenant)
	}
}

func (s *Server) startWorkers() {
	n := s.opts.Webhooks.Workers
	if n < 0 {
		return
	}
	limit := s.opts.Webhooks.TenantWorkers
	if limit <= 0 {
		limit = max(1, n/2)
	}
	// Outcomes wait in record for a shared sync round, which begins when
	// store.OutcomeBatch of them wait or after a delay: fewer slots than
	// that would make a lone worker wait for the timer.
	tr := &turns{busy: map[string]int{}, limit: limit, workers: n, writing: make(chan struct{}, max(2*store.OutcomeBatch, 16*n))}
	s.workers.Add(1)
	go func() { // idle forwarding connections end with the workers
		defer s.workers.Done()
		<-s.base.Done()
		s.fwd.closeIdle()
	}()
	host, _ := os.Hostname()
	for i := range n {
		owner := host + "/" + strconv.Itoa(os.Getpid()) + "/" + strconv.Itoa(i)
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			s.workLoop(tr, owner)
		}()
	}
}

func (s *Server) workLoop(tr *turns, owner string) {
	w := s.opts.Webhooks
	t := time.NewTimer(0)
	defer t.Stop()
	rest := time.NewTimer(time.Hour)
	rest.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		for s.base.Err() == nil {
			e, ok, err := s.lease(tr, owner)
			if err != nil {
				if !errors.Is(err, store.ErrClosed) {
					s.log.Error("webhook lease failed", "err", err)
				}
				break
			}
			if !ok {
				break
			}
			t0 := time.Now()
			unk, perr := s.work(e)
			tr.done(e.Tenant)
			s.record(tr, e, unk, perr)
			s.paceForIntake(rest, t0)
		}
		s.queueDepth()
		t.Reset(w.Poll)
	}
}

// maxPace bounds one rest of paceForIntake: an entry that took long (a
// slow destination) is mostly waiting, not competing with intake.
const maxPace = 20 * time.Millisecond

// paceForIntake rests the worker, on its timer rest, after an entry whose
// work began at t0, while a burst of webhooks waits for the store
// (IntakeFirstAt of them or more) and the process is short of CPU
// (schedWatch). Intake and forwarding then share a machine that cannot
// serve both at full pace, and the workers' CPU, store writes and
// goroutines slow the answers Plaid waits for (issue 12: intake with its
// worker 7.7–8.9k/s against 10.3–11.0k/s without one, in alternated
// runs). Webhooks that wait on a slow store with the CPU idle are no
// burst: resting would slow forwarding and speed nothing. Each of n workers
// rests (2n−1) times as long as its entry took, so together they keep
// working about half of one worker's time: forwarding goes on through the
// burst, at that floor, and every worker drains at full pace once the
// burst is answered. A worker between entries holds no lease and no
// tenant slot, so a rest delays nobody else's entry; it ends at once on
// shutdown. See RATIONALE.md "Why a burst of webhooks is answered first".
func (s *Server) paceForIntake(rest *time.Timer, t0 time.Time) {
	w := s.opts.Webhooks
	if w.IntakeFirstAt < 0 || int(s.intakeWaits.Load()) < w.IntakeFirstAt {
		return // the clock is read only when a burst may be on
	}
	now := time.Now()
	if !s.shortOfCPU(now) {
		return
	}
	s.logPacing(now)
	d := paceRest(w.Workers, now.Sub(t0))
	rest.Reset(d)
	select {
	case <-rest.C:
	case <-s.base.Done():
		rest.Stop()
	}
	s.metrics.paced.Add(d.Seconds())
}

// paceRest is one worker's rest, of n, after an entry that took took:
// 2n−1 times as long, so that n workers together work about half of one
// worker's time, and at most maxPace.
func paceRest(n int, took time.Duration) time.Duration {
	return min(time.Duration(2*n-1)*took, maxPace)
}

// pacedLogEvery is the least time between two "forwarding paced" lines.
const pacedLogEvery = time.Minute

// logPacing tells the operator, at most once a pacedLogEvery, that
// forwarding is slowed for a burst: events then reach the tenants' apps
// later, and this line (with safeclose_webhook_paced_seconds_total) says
// why.
func (s *Server) logPacing(now time.Time) {
	at, last := now.UnixNano(), s.pacedLog.Load()
	if last != 0 && at-last < int64(pacedLogEvery) || !s.pacedLog.CompareAndSwap(last, at) {
		return
	}
	s.log.Info("webhook burst: forwarding paced until the waiting webhooks are answered (safeclose_webhook_paced_seconds_total)",
		"waiting", s.intakeWaits.Load(), "intake_first_at", s.opts.Webhooks.IntakeFirstAt)
}

// shortOfCPU reports whether goroutines wait for a CPU (schedWatch).
func (s *Server) shortOfCPU(now time.Time) bool {
	if f := s.opts.Webhooks.shortOfCPU; f != nil {
		return f()
	}
	return s.sched.saturated(now)
}

// work processes one leased entry, extending its lease while the work runs,
// and returns the outcome and the orphan left for record (see process). If
// the lease is lost (the store refused an extension), the work is cancelled:
// another worker now owns the entry.
func (s *Server) work(e store.Entry) (unk *unknownItem, perr error) {
	ctx, cancel := context.WithCancel(s.base)
	stop := s.heartbeat(cancel, e)
	unk, perr = s.processRecovered(ctx, e)
	cancel()
	stop()
	return unk, perr
}

// processRecovered is process with a panic turned into a failed attempt
// (retried, then dead-lettered) instead of the end of the process.
func (s *Server) processRecovered(ctx context.Context, e store.Entry) (unk *unknownItem, err error) {
	defer s.recoverTo(panicWebhook, &err)
	return s.process(ctx, e)
}

// record writes the outcome of e in the background, so the worker takes its
// next entry while the synced write is under way: concurrent outcomes share
// Badger's commits instead of each worker waiting for its own fsync. unk,
// if not nil, is the orphan process left (see process), written with the
// outcome (finish). The store keeps e unleasable until its outcome is
// written (issue 12); Shutdown waits for these writes (s.workers).
func (s *Server) record(tr *turns, e store.Entry, unk *unknownItem, perr error) {
	tr.writing <- struct{}{}
	s.workers.Add(1)
	go func() {
		defer func() { <-tr.writing; s.workers.Done() }()
		defer s.recoverTo(panicWebhook, nil)
		s.finish(e, unk, perr)
	}()
}

// orphanCompleter is a store that writes an entry's completion and an
// orphan in one transaction (Badger).
type orphanCompleter interface {
	CompleteRecordingOrphan(id string, lease uint64, o store.Orphan) (fresh bool, err error)
}

// Badger's store must stay an orphanCompleter: were its method to drift,
// complete would fall back to two writes without a word.
var _ orphanCompleter = (*store.DB)(nil)

// heartbeat extends e's lease every third of the lease period until the
// returned stop is called; stop returns once no extension runs nor will.
// A lost lease (ErrStaleLease) cancels the work. A timer that re-arms
// itself, not a goroutine with a ticker: nearly every entry is done long
// before its first extension, and the goroutine, ticker and channel cost
// ~3 µs and 16 allocations an entry (issue 12).
func (s *Server) heartbeat(cancel context.CancelFunc, e store.Entry) (stop func()) {
	d := s.opts.Webhooks.Lease
	every := max(d/3, time.Millisecond)
	var (
		mu      sync.Mutex // held while an extension runs
		stopped bool
		t       *time.Timer
	)
	extend := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := s.db.Extend(e.ID, e.LeaseToken, d); err != nil {
			if errors.Is(err, store.ErrStaleLease) {
				s.log.Warn("webhook lease lost; abandoning this attempt", "tenant", e.Tenant, "id", e.ID)
				cancel()
				return
			}
			s.log.Warn("webhook lease not extended", "tenant", e.Tenant, "id", e.ID, "err", err)
		}
		t.Reset(every)
	}
	mu.Lock()
	t = time.AfterFunc(every, extend)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// retryDelay is how long an entry waits after its attempts-th failed
// attempt (0 for the first): Backoff doubled each time, at most MaxBackoff.
func (w WebhookOptions) retryDelay(attempts int) time.Duration {
	d := w.Backoff << min(attempts, 20)
	if d > w.MaxBackoff || d <= 0 {
		d = w.MaxBackoff
	}
	return d
}

// finish records the outcome of one attempt, and unk's orphan if not nil:
// with a completion in the same write where the store can (complete), else
// apart and first, so that the outcome's sync round makes it durable.
func (s *Server) finish(e store.Entry, unk *unknownItem, perr error) {
	if unk != nil && perr != nil {
		s.recordUnknownItem(s.effects(), unk)
	}
	w := s.opts.Webhooks
	m := s.metrics.webhooksDone
	var err error
	switch {
	case perr != nil && s.base.Err() != nil:
		// Graceful stop: the work was cut short, not failed. Give the entry
		// back without counting an attempt.
		err = s.db.Release(e.ID, e.LeaseToken)
		s.log.Info("webhook released at shutdown", "tenant", e.Tenant, "id", e.ID)
	case perr == nil:
		if err = s.complete(e, unk); err == nil {
			s.delivered.forget(e.ID)
		}
		m.WithLabelValues(e.Tenant, "done").Inc()
	case errors.Is(perr, errPermanent) || e.Attempts+1 >= w.MaxAttempts:
		if err = s.db.DeadLetter(e.ID, e.LeaseToken, perr.Error()); err == nil {
			s.delivered.forget(e.ID) // a replay sends to every destination again
		}
		m.WithLabelValues(e.Tenant, "dead_letter").Inc()
		s.log.Error("webhook dead-lettered", "tenant", e.Tenant, "id", e.ID, "attempts", e.Attempts+1, "err", perr)
	default:
		d := w.retryDelay(e.Attempts)
		err = s.db.Retry(e.ID, e.LeaseToken, s.now().Add(d), perr.Error())
		m.WithLabelValues(e.Tenant, "retry").Inc()
		s.log.Warn("webhook processing failed; will retry", "tenant", e.Tenant, "id", e.ID, "attempt", e.Attempts+1, "in", d, "err", perr)
	}
	if err != nil {
		// The lease will expire and the entry will be seen again.
		s.log.Warn("webhook outcome not recorded", "id", e.ID, "err", err)
	}
	s.queueDepth()
}

// complete removes a processed entry from the queue. unk, if not nil, is
// the item nobody holds that it named: its orphan goes in the completion's
// own transaction on a store that can (one write instead of two: issue
// 12), else it is written apart, first. When the one write fails nothing
// was written (an orphan the store refuses, say), and both are written
// apart, so a refused orphan never keeps its entry queued.
func (s *Server) complete(e store.Entry, unk *unknownItem) error {
	if unk == nil {
		return s.db.Complete(e.ID, e.LeaseToken)
	}
	if oc, ok := s.db.(orphanCompleter); ok {
		fresh, err := oc.CompleteRecordingOrphan(e.ID, e.LeaseToken, unk.orphan())
		if err == nil {
			s.reportUnknownItem(unk, fresh)
			return nil
		}
		s.log.Debug("webhook outcome and orphan not written together; writing them apart", "id", e.ID, "err", err)
	}
	s.recordUnknownItem(s.effects(), unk)
	return s.db.Complete(e.ID, e.LeaseToken)
}

// depthEvery is the least time between two reads of the queue depth by the
// gauge; depthCost and depthMost stretch it for a store whose count is slow.
const (
	depthEvery = 100 * time.Millisecond
	depthCost  = 100 // the gauge waits depthCost times as long as a read took,
	depthMost  = 5 * time.Second
)

// depthGap is the wait after a read of the queue depth that took took: at
// least depthEvery, at most depthMost (well inside a scrape interval), and
// otherwise depthCost times took, so counting a long queue costs at most
// about 1/depthCost of a database backend.
func depthGap(took time.Duration) time.Duration {
	return min(max(depthEvery, depthCost*took), depthMost)
}

// queueDepth keeps the queue depth gauge live on every enqueue and outcome
// (issue 12), not only when a worker idles, asking the store at most once
// every depthGap: Badger's QueueLen is O(1) but PostgreSQL's is a count
// over the queue, which on every webhook made intake slower as the queue
// grew, and even ten counts a second of 20,000 queued entries took ≈15% of
// the statement time PostgreSQL spent in an intake run. A call inside the
// gap leaves one trailing refresh, so the gauge is never more than one gap
// behind.
func (s *Server) queueDepth() {
	now := time.Now().UnixNano()
	last := s.depthAt.Load()
	gap := max(time.Duration(s.depthGap.Load()), depthEvery)
	if now-last < int64(gap) || !s.depthAt.CompareAndSwap(last, now) {
		if s.depthPending.CompareAndSwap(false, true) {
			time.AfterFunc(gap, func() {
				s.depthPending.Store(false)
				s.queueDepth()
			})
		}
		return
	}
	t0 := time.Now()
	n, err := s.db.QueueLen()
	s.depthGap.Store(int64(depthGap(time.Since(t0))))
	if err == nil {
		s.metrics.queueDepth.Set(float64(n))
	}
}

// effectStore is where process writes an entry's effects.
type effectStore interface {
	UpdateItem(tenant, itemID string, fn func(*store.Item) error) (store.Item, error)
	RecordOrphan(o store.Orphan) (bool, error)
}

// effects returns the store's deferred-sync view when it has one (Badger):
// the effects of an entry become durable with the round that records its
// outcome, so a worker waits for one shared sync round per entry instead of
// one per write (issue 12). They are idempotent, so a crash before that
// round, which leaves the entry queued, redoes them.
func (s *Server) effects() effectStore {
	if d, ok := s.db.(interface{ Deferred() *store.Deferred }); ok {
		return d.Deferred()
	}
	return s.db
}

// process runs one queue entry: item state, tenant plugins, forwarding.
// Every effect is idempotent so a retry or a re-lease after a crash is safe.
//
// The effect nothing in process reads, the orphan record of an unknown item,
// is returned (unk) for record to write with the outcome: a Badger
// transaction waits for the intake's commits in flight, so the worker
// forwards the next entry meanwhile instead (issue 12: forwarding ran at a
// third of its later rate while intake was busy). It is recorded whatever
// the outcome, as the write was here before.
func (s *Server) process(ctx context.Context, e store.Entry) (unk *unknownItem, err error) {
	tn := s.table.Load().tenants[e.Tenant]
	if tn == nil {
		return nil, fmt.Errorf("tenant %q is not configured", e.Tenant)
	}
	if tn.Unavailable != nil { // retried: its plugins may be back after a reload
		return nil, fmt.Errorf("tenant %q: %w: %s", e.Tenant, ErrTenantUnavailable, tn.Unavailable)
	}
	var ev plaidEvent
	if err := json.Unmarshal(e.Body, &ev); err != nil {
		return nil, fmt.Errorf("%w: body is not JSON: %w", errPermanent, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.eventTimeout())
	defer cancel()

	item, err := s.db.Item(tn.Name, ev.ItemID)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load item: %w", err)
	}
	if known {
		item, err = s.applyEvent(ctx, tn, item, ev, e.ReceivedAt)
		if err != nil {
			return nil, err
		}
	} else {
		// Another tenant's item: Plaid signs every client's webhooks with
		// the same keys, so one tenant's event sent to another's host (one
		// webhook_url for several tenants, or a copy) verifies there. It
		// must reach neither this tenant's plugins and app nor its orphans.
		owner, _, err := s.db.ItemOwner(ev.ItemID)
		switch {
		case err == nil && owner != tn.Name:
			s.log.Error("webhook for another tenant's item dropped; check the tenants' plaid.webhook_url",
				"tenant", tn.Name, "owner", owner, "item_id", ev.ItemID, "event", ev.WebhookType+"/"+ev.WebhookCode)
			return nil, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("load item owner: %w", err)
		}
		unk = &unknownItem{tenant: tn.Name, itemID: ev.ItemID, event: ev.WebhookType + "/" + ev.WebhookCode}
		if ev.ItemID == "" { // nothing to record
			s.reportUnknownItem(unk, false)
			unk = nil
		}
	}

	payload := e.Body
	forwardAll, named := true, map[string]bool{}
	for _, p := range tn.EventPlugins {
		// Past the deadline no plugin is called: ReloadGrace counts on it,
		// as tn may be from a table a reload has since retired.
		if err := ctx.Err(); err != nil {
			return unk, fmt.Errorf("webhook plugin: %w", err)
		}
		res, err := p.HandleEvent(ctx, hostabi.Event{
			Tenant: tn.Name, User: item.User, ItemID: ev.ItemID, ItemState: string(item.State), Body: payload,
		})
		if err != nil {
			return unk, fmt.Errorf("webhook plugin: %w", err)
		}
		if res.Payload != nil {
			payload = res.Payload
		}
		switch res.Action {
		case hostabi.ActionDrop:
			return unk, nil
		case hostabi.ActionForward:
			if len(res.Forward) > 0 {
				forwardAll = false
				for _, n := range res.Forward {
					named[n] = true
				}
			} else if res.Named {
				// It meant to choose destinations and every name was
				// refused: read as "all" the event could reach a
				// destination the plugin meant to keep it from.
				return unk, fmt.Errorf("%w: an event plugin asked to forward to chosen destinations, and add_forward refused every name it gave", errPermanent)
			}
		}
	}
	targets := tn.Forward
	var unknown []string
	if !forwardAll {
		targets = nil
		for _, d := range tn.Forward {
			if named[d.Name] {
				targets = append(targets, d)
				delete(named, d.Name)
			}
		}
		for n := range named { // a typo, a destination a reload removed, another tenant's
			unknown = append(unknown, n)
		}
	}
	err = s.forwardAll(ctx, tn, targets, e, item, payload)
	if len(unknown) > 0 {
		slices.Sort(unknown)
		// Retrying cannot make it exist: a dead letter saying so (after
		// the destinations that do exist), for the operator to fix the
		// plugin or the config and replay, not an event dropped unseen.
		return unk, errors.Join(err, fmt.Errorf("%w: an event plugin named destination(s) %q, which tenant %s does not have", errPermanent, unknown, tn.Name))
	}
	return unk, err
}

// forwardAll posts the event to every target at once, each under its own
// timeout, and returns the failures joined. The attempt fails if any
// target failed, but the others still get the event: one broken
// destination must not keep an event from a tenant's others. A target
// that answered 2xx in an earlier attempt of this process is not sent the
// event again (deliveries): a retry goes to the ones that failed.
// Another replica, or this process after a restart, sends it to all again,
// under the same webhook-id, by which receivers dedupe.
func (s *Server) forwardAll(ctx context.Context, tn *tenant, targets []Destination, e store.Entry, item store.Item, payload []byte) error {
	var done map[string]bool
	if e.Attempts == 0 {
		// A first attempt, or a replay (which resets the attempts): every
		// destination gets it, whatever this process remembers of an
		// earlier life of the entry (another replica may have written its
		// dead letter).
		s.delivered.forget(e.ID)
	} else {
		done = s.delivered.get(e.ID, s.now())
	}
	errs := make([]error, len(targets))
	send := func(i int, d Destination) {
		if err := s.forward(ctx, tn, d, e, item, payload); err != nil {
			s.metrics.forwards.WithLabelValues(tn.Name, d.Name, "error").Inc()
			errs[i] = fmt.Errorf("forward to %s: %w", d.Name, err)
			return
		}
		s.metrics.forwards.WithLabelValues(tn.Name, d.Name, "ok").Inc()
		if len(targets) > 1 { // one target has no other to spare a retry
			s.delivered.add(e.ID, d.Name, s.now())
		}
	}
	var wg sync.WaitGroup
	for i, d := range targets {
		switch {
		case done[d.Name]:
		case i == len(targets)-1: // the last, usually the only one, on this goroutine
			send(i, d)
		default:
			wg.Go(func() { send(i, d) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliveries remembers, per queue entry, the destinations that answered 2xx
// in an attempt of this process, until the entry's outcome is final
// (forget) or deliveryMemory passes. It holds at most deliveriesMax
// entries; past that the oldest are forgotten (their next retry sends to
// every destination again).
type deliveries struct {
	mu sync.Mutex
	m  map[string]*delivered
}

type delivered struct {
	names map[string]bool
	at    time.Time // last added
}

const (
	deliveriesMax  = 10000
	deliveryMemory = 48 * time.Hour // past the retry schedule's span at its defaults
)

// get returns a copy of the destinations id was delivered to, unless that
// was longer than deliveryMemory ago.
func (d *deliveries) get(id string, now time.Time) map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if x := d.m[id]; x != nil && now.Sub(x.at) <= deliveryMemory {
		return maps.Clone(x.names)
	}
	return nil
}

func (d *deliveries) add(id, name string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]*delivered{}
	}
	x := d.m[id]
	if x == nil {
		if len(d.m) >= deliveriesMax {
			d.prune(now)
		}
		x = &delivered{names: map[string]bool{}}
		d.m[id] = x
	}
	x.names[name], x.at = true, now
}

// prune drops what is older than deliveryMemory, then, if still full, the
// oldest half.
func (d *deliveries) prune(now time.Time) {
	for id, x := range d.m {
		if now.Sub(x.at) > deliveryMemory {
			delete(d.m, id)
		}
	}
	if len(d.m) < deliveriesMax {
		return
	}
	ats := make([]time.Time, 0, len(d.m))
	for _, x := range d.m {
		ats = append(ats, x.at)
	}
	slices.SortFunc(ats, time.Time.Compare)
	cut := ats[len(ats)/2]
	for id, x := range d.m {
		if !x.at.After(cut) {
			delete(d.m, id)
		}
	}
}

// forget drops id once its outcome is final.
func (d *deliveries) forget(id string) {
	d.mu.Lock()
	delete(d.m, id)
	d.mu.Unlock()
}

// eventTimeout bounds one attempt at a webhook event (process): Plaid's
// /item/get, the tenant's event plugins and the forwards. ReloadGrace
// covers it.
func (s *Server) eventTimeout() time.Duration { return s.opts.PlaidTimeout + 10*time.Second }

// errConfirmRaced is a confirmation of an item's state that another was
// written before: the attempt is retried, and asks Plaid again.
var errConfirmRaced = errors.New("item state confirmed by another worker meanwhile; asking Plaid again")

// applyEvent moves the item's state. Login state is confirmed with /item/get,
// so duplicates and out-of-order ERROR / LOGIN_REPAIRED settle on the truth:
// a confirmation is written only if no other was since item was read, before
// the call (Item.CheckedAt), else the attempt is retried. Two workers, of one
// replica or two, may confirm one item at once, and the older call's answer
// may arrive last (a replica paused past its lease writes it when it wakes).
func (s *Server) applyEvent(ctx context.Context, tn *tenant, item store.Item, ev plaidEvent, at time.Time) (store.Item, error) {
	var next store.ItemState
	confirmed := false
	switch ev.WebhookType + "/" + ev.WebhookCode {
	case "ITEM/ERROR", "ITEM/LOGIN_REPAIRED":
		code := ""
		if ev.Error != nil {
			code = ev.Error.ErrorCode
		}
		if ev.WebhookCode == "ERROR" && code != "ITEM_LOGIN_REQUIRED" {
			break
		}
		at, err := s.db.AccessToken(tn.Name, item.User, item.ItemID)
		if err != nil {
			return item, fmt.Errorf("open token: %w", err)
		}
		info, err := tn.plaid.itemGet(ctx, at)
		var pe *PlaidError
		switch {
		case err == nil && info.ErrorCode == "ITEM_LOGIN_REQUIRED":
			next = store.StateLoginRequired
		case err == nil:
			next = store.StateOK
		case errors.As(err, &pe) && pe.Code == "INVALID_ACCESS_TOKEN":
			next = store.StateRevoked
		default:
			return item, fmt.Errorf("confirm item state: %w", err)
		}
		confirmed = true
	case "ITEM/PENDING_EXPIRATION":
		next = store.StatePendingExpiration
	case "ITEM/PENDING_DISCONNECT":
		next = store.StatePendingDisconnect
	case "ITEM/USER_PERMISSION_REVOKED", "ITEM/USER_ACCOUNT_REVOKED":
		next = store.StateRevoked
	}
	return s.effects().UpdateItem(tn.Name, item.ItemID, func(it *store.Item) error {
		if confirmed {
			if !it.CheckedAt.Equal(item.CheckedAt) {
				return errConfirmRaced
			}
			it.CheckedAt = s.now().UTC()
		}
		// A pending_* warning never hides login_required (it may be a late
		// delivery, and either way the item needs re-login now); only a
		// state /item/get confirmed, or revoked, leaves login_required.
		if (next == store.StatePendingExpiration || next == store.StatePendingDisconnect) && it.State == store.StateLoginRequired {
			next = ""
		}
		if next != "" && it.State != store.StateRevoked && it.State != next {
			it.State = next
			it.UpdatedAt = s.now().UTC()
		}
		if ev.ConsentExpirationTime != nil {
			it.ConsentExpiresAt = ev.ConsentExpirationTime.UTC()
		}
		if !at.Before(it.LastEventAt) {
			it.LastEvent = ev.WebhookType + "/" + ev.WebhookCode
			it.LastEventAt = at
		}
		return nil
	})
}

// forward posts the event to a tenant destination, signed with the Standard
// Webhooks scheme. The webhook-id is the queue entry's id, stable across
// retries, so receivers can dedupe.
func (s *Server) forward(ctx context.Context, tn *tenant, d Destination, e store.Entry, item store.Item, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	ts := s.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", stdwebhooks.Sign(d.Secret, e.ID, ts, payload))
	req.Header.Set(HeaderTenant, tn.Name)
	if item.User != "" {
		req.Header.Set(HeaderUser, item.User)
	}
	resp, err := s.fwd.client(s, req.URL).Do(req)
	if err != nil {
		// The error quotes the URL; a destination's query may hold a token
		// (?key=…), and the error goes to the log, the queue entry's last
		// error and `safeclose webhooks list`.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = redactURL(ue.URL)
		}
		return err
	}
	// Read (a bounded part of) the answer so the connection goes back to the
	// pool; an answer left unread closes it.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil {
		s.log.Debug("webhook destination answer not read", "destination", d.Name, "err", err) // the status decides
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		loc := redactURL(resp.Header.Get("Location"))
		if len(loc) > 200 {
			loc = loc[:200] + "…"
		}
		return fmt.Errorf("destination answered %d, a redirect (not followed) to %q: fix the destination URL", resp.StatusCode, loc)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("destination answered %d", resp.StatusCode)
	}
	return nil
}

// redactURL is u as errors and logs may show it: scheme and host, with any
// user info, path, query or fragment replaced by "…". Each can hold a
// token (https://TOKEN@host, /hooks/T000/TOKEN, ?key=TOKEN), and the
// error goes to the log, the queue entry's last error and `safeclose
// webhooks list`.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		if u == "" {
			return ""
		}
		return "…"
	}
	out := p.Scheme + "://"
	if p.User != nil {
		out += "…@"
	}
	out += p.Host
	if p.Path != "" && p.Path != "/" || p.RawQuery != "" || p.Fragment != "" {
		out += "/…"
	}
	return out
}

// noRedirect makes a forward's redirect its answer. Followed, a 301, 302 or
// 303 turns the POST into a GET without the event, whose 2xx would count as
// delivered; a 307 or 308 sends the signed event to a URL nobody
// configured. Either way the event must stay queued until the destination
// itself answers 2xx.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// forwardClients holds one keep-alive HTTP client per destination (scheme and
// host), so forwarding reuses connections instead of dialling per event
// (issue 12: 403 new connections for 20k forwards with the shared default
// transport, which keeps two idle connections a host and dropped those whose
// answer was not read). The zero value is ready to use.
type forwardClients struct {
	mu  sync.Mutex
	m   map[string]*http.Client
	own *http.Client // Options.HTTPClient, copied with noRedirect by New
}

// client returns the pooled client for u's host, or the copy of
// Options.HTTPClient when one is configured (its owner then decides
// pooling). Neither follows redirects (noRedirect).
func (f *forwardClients) client(s *Server, u *url.URL) *http.Client {
	if f.own != nil {
		return f.own
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := u.Scheme + "://" + u.Host
	if c := f.m[key]; c != nil {
		return c
	}
	if f.m == nil {
		f.m = map[string]*http.Client{}
	}
	idle := max(2, s.opts.Webhooks.Workers) // every worker may be forwarding to this host
	c := &http.Client{Timeout: s.opts.PlaidTimeout, CheckRedirect: noRedirect, Transport: &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2: true,
		// A destination's answer matters by its status alone: its
		// headers are bounded like an upstream's (the default is 10 MiB).
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConnsPerHost:    idle,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
	}}
	f.m[key] = c
	return c
}

// closeIdle closes every pooled client's idle connections.
func (f *forwardClients) closeIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.m {
		c.CloseIdleConnections()
	}
}
