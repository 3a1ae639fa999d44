package hostabi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/safeclose/safeclose/hostabi/abi"
	"github.com/safeclose/safeclose/internal/loglimit"
)

// Plugin is a loaded, pre-warmed plugin. Its methods are safe for
// concurrent use; each call borrows one instance from a bounded pool. See
// RATIONALE.md "Why a bounded pool of pre-warmed instances".
type Plugin struct {
	opts        PluginOptions
	e           *Engine
	rt          wazero.Runtime
	compiled    wazero.CompiledModule
	initialize  bool
	log         *slog.Logger
	compileTime time.Duration
	jwt         *jwtVerifier
	kv          KVStore              // nil unless Caps.KV
	cache       *decisionCache       // nil unless PluginOptions.CacheTTL
	logs        loglimit.Limiter     // plugin log lines: 20 a second, bursts of 50
	epoch       time.Time            // call deadlines are offsets from it (monotonic)
	clock       func() time.Duration // offset from epoch; nil means time.Since(epoch), tests replace it
	box         *penaltyBox
	share       *cpuShare // nil unless fuel measures the calls
	fuelPlan

	pool   chan *instance
	gate   sync.RWMutex // calls hold R; Close takes W after setting closed
	closed atomic.Bool
	stop   chan struct{}
	bg     sync.WaitGroup // watchdog and refills

	mu  sync.Mutex
	all map[*instance]struct{}

	calls, traps, timeouts, busy, cacheHits atomic.Uint64
}

// Stats returns the plugin's counters.
func (p *Plugin) Stats() Stats {
	p.mu.Lock()
	n := len(p.all)
	p.mu.Unlock()
	s := Stats{
		Calls: p.calls.Load(), CacheHits: p.cacheHits.Load(), Traps: p.traps.Load(), Timeouts: p.timeouts.Load(), Busy: p.busy.Load(),
		Instances: uint64(n), CompileTime: p.compileTime,
		Penalized: p.box.rejected.Load(), PenaltyOpens: p.box.opens.Load(), InPenaltyBox: p.box.inBox(),
	}
	if p.share != nil {
		s.OverShare = p.share.refused.Load()
	}
	return s
}

func (p *Plugin) instantiateHost(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return fmt.Errorf("wasi: %w", err)
	}
	b := p.rt.NewHostModuleBuilder(abi.ModuleName)
	for name, hf := range hostFuncs {
		b.NewFunctionBuilder().WithGoModuleFunction(hf.fn, hf.params, hf.results).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("host module: %w", err)
	}
	return nil
}

// start fills the pool synchronously: a module that cannot start is refused
// at load, not at the first request.
func (p *Plugin) start(ctx context.Context) error {
	p.pool = make(chan *instance, p.opts.PoolSize)
	p.stop = make(chan struct{})
	p.all = make(map[*instance]struct{}, p.opts.PoolSize)
	for range p.opts.PoolSize {
		in, err := p.newInstance(ctx)
		if err != nil {
			p.closeInstances(ctx)
			return err
		}
		p.pool <- in
	}
	p.bg.Add(1)
	go p.watchdog()
	return nil
}

type instKey struct{}

// instance is one guest module instance and the state of its current call.
// Its ctx is the instance's lifetime, not a request's: cancelling it is how
// the watchdog tells wazero to stop the guest (RATIONALE.md "Why the
// deadline is a watchdog").
type instance struct {
	p        *Plugin
	mod      api.Module
	mem      api.Memory
	fn       api.Function
	ctx      context.Context
	cancel   context.CancelFunc
	deadline atomic.Int64 // nanoseconds after Plugin.epoch; 0 when idle
	timedOut atomic.Bool
	stack    [1]uint64
	used     bool // has run a call; only its holder reads or writes it
	stderr   capWriter
	fuelInst // under EnforceFuel, cancel also raises the fuel limit

	// The current call.
	req         Request
	ev          *Event
	subject     []byte
	subjectSet  bool
	lastSubject string
	claims      []Claim
	payload     []byte
	payloadSet  bool
	forward     []string
	named       bool // add_forward was called in this call
	jwtTok      *jwtEntry

	// Decision cache recording (PluginOptions.CacheTTL).
	reads       []read
	values      []byte
	uncacheable bool
	jwtExp      time.Time

	// Header reads; the answer is written to the guest if it fits.
	hv headerVisitor[[]byte]
}

func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{p: p, subject: make([]byte, 0, 64)}
	in.hv.init(0)
	in.ctx, in.cancel = context.WithCancel(context.WithValue(context.Background(), instKey{}, in))
	cfg := wazero.NewModuleConfig().WithName("").
		WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader).
		WithStdout(io.Discard).WithStderr(&in.stderr)
	if p.initialize && !p.fuelOn { // under fuel, fuelStart runs it
		cfg = cfg.WithStartFunctions(abi.ExportInitialize)
	} else {
		cfg = cfg.WithStartFunctions()
	}
	// The start function runs under a deadline too: a guest that loops in
	// init must not hang a reload.
	ictx, icancel := context.WithTimeout(in.ctx, initTimeout(p.opts.Timeout))
	defer icancel()
	mod, err := p.rt.InstantiateModule(ictx, p.compiled, cfg)
	if err != nil {
		in.cancel()
		if se := in.stderr.String(); se != "" {
			return nil, fmt.Errorf("instantiate: %w (stderr: %s)", err, se)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in.mod, in.mem = mod, mod.Memory()
	if err := p.fuelStart(in); err != nil {
		in.cancel()
		_ = mod.Close(ctx)
		if se := in.stderr.String(); se != "" {
			return nil, fmt.Errorf("instantiate: %w (stderr: %s)", err, se)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in.fn = mod.ExportedFunction(p.opts.Kind.export())
	if in.fn == nil || in.mem == nil {
		in.cancel()
		_ = mod.Close(ctx)
		return nil, errors.New("instance lacks its export or memory")
	}
	p.mu.Lock()
	p.all[in] = struct{}{}
	p.mu.Unlock()
	return in, nil
}

// acquire borrows an instance, waiting at most the call timeout.
func (p *Plugin) acquire() (*instance, error) {
	select {
	case in := <-p.pool:
		return in, nil
	default:
	}
	t := time.NewTimer(p.opts.Timeout)
	defer t.Stop()
	select {
	case in := <-p.pool:
		return in, nil
	case <-t.C:
		p.busy.Add(1)
		return nil, ErrBusy
	case <-p.stop:
		return nil, ErrClosed
	}
}

func (p *Plugin) release(in *instance) {
	in.req, in.ev, in.jwtTok = nil, nil, nil
	p.pool <- in // never blocks: at most PoolSize instances exist
}

// discard kills a failed instance and starts a replacement.
func (p *Plugin) discard(in *instance) {
	in.cancel()
	_ = in.mod.Close(context.Background())
	p.mu.Lock()
	delete(p.all, in)
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	// Under p.mu, as Close sets closed: a refill is either counted before
	// Close's bg.Wait or not started.
	p.bg.Add(1)
	p.mu.Unlock()
	go p.refill()
}

func (p *Plugin) refill() {
	defer p.bg.Done()
	delay := 50 * time.Millisecond
	for {
		in, err := p.newInstance(context.Background())
		if err == nil {
			p.mu.Lock()
			closed := p.closed.Load()
			p.mu.Unlock()
			if closed {
				p.discardQuiet(in)
				return
			}
			p.pool <- in
			return
		}
		p.log.Error("plugin instance could not be replaced; retrying", "err", err, "in", delay)
		select {
		case <-p.stop:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (p *Plugin) discardQuiet(in *instance) {
	in.cancel()
	_ = in.mod.Close(context.Background())
	p.mu.Lock()
	delete(p.all, in)
	p.mu.Unlock()
}

// watchdog kills instances whose call ran past its deadline. Checking
// every quarter of the timeout costs nothing per call; a runaway guest is
// stopped within 1.25× its timeout.
func (p *Plugin) watchdog() {
	defer p.bg.Done()
	tick := min(max(p.opts.Timeout/4, time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			n := int64(time.Since(p.epoch))
			p.mu.Lock()
			for in := range p.all {
				if d := in.deadline.Load(); d != 0 && n > d {
					in.timedOut.Store(true)
					in.cancel()
				}
			}
			p.mu.Unlock()
		}
	}
}

// call runs the instance's export under the deadline. On any failure the
// instance is discarded and the error says why; a plugin over its CPU
// share (ErrOverShare) does not run, and the instance goes back. A call
// that returns after its deadline is a timeout even when the guest
// returned a value: wazero cannot interrupt one long instruction (a large
// memory.grow), so the watchdog alone does not guarantee a late result is
// never used.
func (p *Plugin) call(in *instance) (uint64, error) {
	// Two monotonic clock reads per call, no wall clock: time.Now costs
	// two clock reads, and a clock read is ~0.1 µs on a KVM guest
	// (issue 12.2). A wall-clock step is not a timeout.
	start := p.elapsed()
	if p.share != nil && p.share.over(start) {
		p.release(in) // the guest did not run: the instance is as it was
		return 0, ErrOverShare
	}
	p.calls.Add(1)
	in.used = true
	in.stderr.Reset()
	in.deadline.Store(int64(start + p.opts.Timeout))
	p.refuel(in)
	err := in.fn.CallWithStack(in.ctx, in.stack[:])
	in.deadline.Store(0)
	late := p.elapsed()-start > p.opts.Timeout
	if p.share != nil { // charged from the call's start: the clock it was admitted by
		p.share.spend(start, p.burned(in))
	}
	if err == nil && !late {
		return in.stack[0], nil
	}
	// A trap stays a trap even if it came late; a late answer is a timeout.
	timedOut := in.timedOut.Load() || in.outOfFuel() || err == nil
	stderr := in.stderr.String()
	p.discard(in)
	if timedOut {
		p.timeouts.Add(1)
		return 0, fmt.Errorf("%w after %s: %s/%s", ErrTimeout, p.opts.Timeout, p.opts.Tenant, p.opts.Name)
	}
	p.traps.Add(1)
	return 0, &TrapError{Tenant: p.opts.Tenant, Plugin: p.opts.Name, Export: p.opts.Kind.export(), Err: err, Stderr: stderr}
}

// burned is the fuel in's last call used (under EnforceFuel): the budget
// refuel set minus what is left.
func (p *Plugin) burned(in *instance) int64 { return p.fuelBudget - int64(in.fuel.Get()) }

// elapsed is the call clock: monotonic time since p.epoch.
func (p *Plugin) elapsed() time.Duration {
	if p.clock != nil {
		return p.clock()
	}
	return time.Since(p.epoch)
}

// enter admits a call through the penalty box and borrows an instance.
// probe says the call is the box's half-open probe; the caller reports the
// outcome with p.done. On error nothing is held.
func (p *Plugin) enter() (in *instance, probe bool, err error) {
	if p.closed.Load() {
		return nil, false, ErrClosed // not ErrPenalty: a reload, not a fault
	}
	probe, ok := p.box.admit()
	if !ok {
		return nil, false, ErrPenalty
	}
	p.gate.RLock()
	if p.closed.Load() {
		p.gate.RUnlock()
		p.box.abandon(probe)
		return nil, false, ErrClosed
	}
	in, err = p.acquire()
	if err != nil {
		p.gate.RUnlock()
		p.box.abandon(probe)
		return nil, false, err
	}
	if !probe && !p.box.stillClosed() {
		p.release(in)
		p.gate.RUnlock()
		return nil, false, ErrPenalty
	}
	return in, probe, nil
}

// done reports a call's outcome to the penalty box and logs the box's
// changes (at most one line a window, so unthrottled): an operator sees
// when a plugin's calls start failing fast and when it is back. When the
// outcome opens the box, the idle instances that have served a call are
// retired: the failures may be wear (a guest that leaks fills every
// pooled instance at about the same call), and a probe that ran on the
// next worn instance would fail and double the window once per instance
// left. Never-used instances are kept, so a guest that fails on fresh
// instances costs no extra instantiation.
func (p *Plugin) done(probe, failed bool) {
	switch p.box.done(probe, failed) {
	case boxOpen:
		p.log.Warn("plugin in its penalty box: its calls fail fast until a probe call succeeds",
			"window", p.box.window(), "opens", p.box.opens.Load())
	case boxClosed:
		p.log.Info("plugin out of its penalty box: a probe call succeeded")
		return
	default:
		return
	}
	var keep []*instance
	for range cap(p.pool) {
		var in *instance
		select {
		case in = <-p.pool:
		default:
		}
		if in == nil {
			break
		}
		if in.used {
			p.discard(in)
		} else {
			keep = append(keep, in)
		}
	}
	for _, in := range keep {
		p.pool <- in
	}
}

// callFailed reports a call's error to the penalty box. A refusal for the
// CPU share is not a guest failure: it neither opens nor closes the box.
func (p *Plugin) callFailed(probe bool, err error) {
	if errors.Is(err, ErrOverShare) {
		p.box.abandon(probe)
		return
	}
	p.done(probe, true)
}

// Authenticate runs auth_handle for one request. The Request is only read
// during the call. Any error means the caller must fail closed.
func (p *Plugin) Authenticate(_ context.Context, r Request) (Decision, error) {
	if p.opts.Kind != KindAuth {
		return Decision{}, fmt.Errorf("hostabi: %s is not an auth plugin", p.opts.Name)
	}
	if p.cache != nil && !p.closed.Load() {
		if d, ok := p.cache.lookup(p.opts.BodyLimit, r); ok {
			p.cacheHits.Add(1)
			return d, nil
		}
	}
	in, probe, err := p.enter()
	if err != nil {
		return Decision{}, err
	}
	defer p.gate.RUnlock()
	in.req = r
	in.subject, in.subjectSet, in.claims = in.subject[:0], false, in.claims[:0]
	in.reads, in.values, in.uncacheable, in.jwtExp = in.reads[:0], in.values[:0], false, time.Time{}
	v, err := p.call(in)
	if err != nil {
		p.callFailed(probe, err)
		return Decision{}, err
	}
	allow, status, ok := abi.AuthStatus(int64(v))
	var d Decision
	switch {
	case !ok:
		err = fmt.Errorf("%w: auth_handle returned %d", ErrBadResult, int64(v))
	case !allow:
		d = Decision{Status: status}
	case !in.subjectSet:
		err = fmt.Errorf("%w: allowed without set_subject", ErrBadResult)
	default:
		if string(in.subject) != in.lastSubject {
			in.lastSubject = string(in.subject)
		}
		d = Decision{Allow: true, Subject: in.lastSubject}
		if len(in.claims) > 0 {
			d.Claims = append([]Claim(nil), in.claims...)
		}
		if p.cache != nil {
			p.cache.store(in, d)
		}
	}
	p.release(in)
	p.done(probe, err != nil)
	return d, err
}

// HandleEvent runs event_handle for one verified webhook event.
func (p *Plugin) HandleEvent(_ context.Context, ev Event) (EventResult, error) {
	if p.opts.Kind != KindEvent {
		return EventResult{}, fmt.Errorf("hostabi: %s is not an event plugin", p.opts.Name)
	}
	in, probe, err := p.enter()
	if err != nil {
		return EventResult{}, err
	}
	defer p.gate.RUnlock()
	in.ev = &ev
	in.payload, in.payloadSet, in.forward, in.named = nil, false, nil, false
	v, err := p.call(in)
	if err != nil {
		p.callFailed(probe, err)
		return EventResult{}, err
	}
	res := EventResult{Action: Action(int32(uint32(v))), Forward: in.forward, Named: in.named}
	if in.payloadSet {
		res.Payload = in.payload
	}
	p.release(in)
	switch res.Action {
	case ActionKeep, ActionDrop, ActionForward:
		p.done(probe, false)
		return res, nil
	}
	p.done(probe, true)
	return EventResult{}, fmt.Errorf("%w: event_handle returned %d", ErrBadResult, int32(uint32(v)))
}

// Close stops the plugin: new calls get ErrClosed, in-flight calls finish
// (bounded by ctx), then every instance and the runtime are released.
func (p *Plugin) Close(ctx context.Context) error {
	// Set under p.mu, as discard reads it: a call still running that
	// discards its instance either counted its refill before this, so
	// bg.Wait below waits for it, or sees closed and starts none.
	p.mu.Lock()
	closing := p.closed.CompareAndSwap(false, true)
	p.mu.Unlock()
	if !closing {
		return nil
	}
	close(p.stop)
	done := make(chan struct{})
	go func() {
		// Once the writer holds the gate no call is in flight; later calls
		// see closed and leave, so the gate is released at once.
		p.gate.Lock()
		close(done)
		p.gate.Unlock()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// Calls still running are stopped by closing the runtime below.
	}
	p.bg.Wait()
	p.closeInstances(ctx)
	err := p.rt.Close(context.Background())
	p.closeCompiled()
	return err
}

// closeCompiled releases the plugin's compiled module. The runtime shares
// its engine with every plugin through the Engine's compilation cache, so
// closing the runtime does not release it: without this, each reload kept
// its module's compiled code in the engine for the life of the process.
// (wazero frees the code itself once no instance can run it.)
func (p *Plugin) closeCompiled() {
	if p.compiled != nil {
		_ = p.compiled.Close(context.Background())
	}
}

func (p *Plugin) closeInstances(ctx context.Context) {
	p.mu.Lock()
	all := make([]*instance, 0, len(p.all))
	for in := range p.all {
		all = append(all, in)
	}
	p.mu.Unlock()
	for _, in := range all {
		in.cancel()
		_ = in.mod.Close(ctx)
	}
	p.mu.Lock()
	clear(p.all)
	p.mu.Unlock()
}

// capWriter keeps the first 2 KiB written to it (a guest's stderr).
type capWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *capWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	if room := 2048 - len(w.buf); room > 0 {
		w.buf = append(w.buf, b[:min(room, len(b))]...)
	}
	w.mu.Unlock()
	return len(b), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func (w *capWriter) Reset() {
	w.mu.Lock()
	w.buf = w.buf[:0]
	w.mu.Unlock()
}
