package hostabi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/safeclose/safeclose/hostabi/abi"
	"github.com/safeclose/safeclose/hostabi/internal/fuel"
)

// Enforcement selects how a call's deadline stops a running guest. See
// RATIONALE.md "Why fuel instead of CloseOnContextDone".
type Enforcement int

const (
	// EnforceFuel rewrites each module at load so that every loop header
	// and every function that calls another charges fuel and traps when
	// the fuel runs out or the host raises a limit. The host refills the
	// fuel before each call (a budget of about twice the timeout's worth
	// of the fastest guest code, calibrated once per Engine) and the
	// plugin's watchdog raises the limit of a call that overruns its
	// deadline. No goroutine per call, no exit to Go at back-edges.
	EnforceFuel Enforcement = iota
	// EnforceContext is wazero's own: modules compiled with
	// WithCloseOnContextDone, the watchdog cancels the instance's
	// context. Each call starts a goroutine and every loop back-edge
	// calls into the runtime.
	EnforceContext
	// enforceNone runs guests unbounded; benchmarks only.
	enforceNone
)

// initFuel is what a module's own start section (not _initialize) may
// spend; Go reactors have none. A constant keeps the rewritten bytes, and
// so the compilation cache's key, the same across restarts.
const initFuel = 1 << 32

// fuelPlan is a plugin's per-call and _initialize budgets.
type fuelPlan struct {
	fuelOn                 bool
	fuelBudget, initBudget int64
}

// fuelInst is an instance's two globals (nil unless EnforceFuel). Only the
// calling goroutine touches fuel; the limit is written once, by whoever
// raises it first (the watchdog, the init timer, discard or Close).
type fuelInst struct {
	fuel, limit api.MutableGlobal
	raised      atomic.Bool
}

// raiseLimit makes the instance's next fuel check trap.
func (in *instance) raiseLimit() {
	if in.raised.CompareAndSwap(false, true) {
		in.limit.Set(math.MaxInt64)
	}
}

// fuelRate returns fuel units per second on the fastest guest code,
// measured once per Engine.
func (e *Engine) fuelRate() (float64, error) {
	e.fuelOnce.Do(func() { e.fuelPerSec, e.fuelErr = calibrate() })
	return e.fuelPerSec, e.fuelErr
}

// prepare returns the bytes to compile: the module rewritten to meter
// itself under EnforceFuel, else the module as given. A module the
// rewriter cannot decode is compiled as given only to report wazero's
// reason for refusing it.
func (e *Engine) prepare(ctx context.Context, rt wazero.Runtime, p *Plugin, wasm []byte) ([]byte, error) {
	if e.enforce != EnforceFuel {
		return wasm, nil
	}
	rate, err := e.fuelRate()
	if err != nil {
		return nil, err
	}
	p.fuelOn = true
	p.share = newCPUShare(p.opts.CPUShare, rate)
	p.fuelBudget = budget(rate, p.opts.Timeout)
	p.initBudget = budget(rate, initTimeout(p.opts.Timeout))
	out, err := fuel.Instrument(wasm, fuel.Options{Initial: initFuel})
	if err != nil {
		cm, cerr := rt.CompileModule(ctx, wasm)
		if cerr != nil {
			return nil, fmt.Errorf("compile: %w", cerr)
		}
		_ = cm.Close(ctx)
		return nil, fmt.Errorf("instrument: %w", err)
	}
	return out, nil
}

// budget is twice the fuel the fastest code burns in d: legitimate guest
// code burns fuel more slowly than the calibration loop, so the watchdog
// (wall clock) stops an overrunning call first and the fuel is a backstop
// that needs no other goroutine.
func budget(rate float64, d time.Duration) int64 {
	return int64(min(2*rate*d.Seconds(), math.MaxInt64/4))
}

func initTimeout(timeout time.Duration) time.Duration { return max(10*timeout, 5*time.Second) }

// fuelStart finds the instance's globals, makes the watchdog's cancel
// raise the limit, and runs _initialize (when the module has one) under the
// init budget and a wall-clock timer. It does nothing unless EnforceFuel.
func (p *Plugin) fuelStart(in *instance) error {
	if !p.fuelOn {
		return nil
	}
	in.fuel, _ = in.mod.ExportedGlobal(fuel.DefaultFuelExport).(api.MutableGlobal)
	in.limit, _ = in.mod.ExportedGlobal(fuel.DefaultLimitExport).(api.MutableGlobal)
	if in.fuel == nil || in.limit == nil {
		return errors.New("instrumented module lacks its fuel globals")
	}
	cancel := in.cancel
	in.cancel = func() {
		in.raiseLimit()
		cancel()
	}
	if !p.initialize {
		return nil
	}
	d := initTimeout(p.opts.Timeout)
	in.fuel.Set(uint64(p.initBudget))
	t := time.AfterFunc(d, in.raiseLimit)
	_, err := in.mod.ExportedFunction(abi.ExportInitialize).Call(in.ctx)
	fired := !t.Stop()
	switch {
	case err != nil && (fired || in.outOfFuel()):
		return fmt.Errorf("%w: %s ran past %s", ErrTimeout, abi.ExportInitialize, d)
	case err != nil:
		return fmt.Errorf("%s: %w", abi.ExportInitialize, err)
	case fired:
		return fmt.Errorf("%w: %s ran past %s", ErrTimeout, abi.ExportInitialize, d)
	}
	return nil
}

// refuel gives the instance a call's budget. It allocates nothing.
func (p *Plugin) refuel(in *instance) {
	if in.fuel != nil {
		in.fuel.Set(uint64(p.fuelBudget))
	}
}

// outOfFuel reports whether the instance's last call trapped for want of
// fuel.
func (in *instance) outOfFuel() bool { return in.fuel != nil && int64(in.fuel.Get()) < 0 }

// runtimeConfig is the wazero configuration for the engine's enforcement.
func (e *Engine) runtimeConfig() wazero.RuntimeConfig {
	return wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(e.enforce == EnforceContext)
}

// calibrate measures fuel units per second on an empty loop, which a fuel
// check stops: each unit costs one check and nothing else, the least any
// code pays per unit, so real guests burn fuel more slowly. It
// counts the thread's CPU time where the platform has a clock for it (Linux),
// else wall time, and keeps the best of five short runs, so a loaded machine
// does not shrink budgets.
func calibrate() (float64, error) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	wasm, err := fuel.Instrument(spinModule, fuel.Options{})
	if err != nil {
		return 0, fmt.Errorf("hostabi: calibrate: %w", err)
	}
	m, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		return 0, fmt.Errorf("hostabi: calibrate: %w", err)
	}
	g, _ := m.ExportedGlobal(fuel.DefaultFuelExport).(api.MutableGlobal)
	spin := m.ExportedFunction("spin")
	if g == nil || spin == nil {
		return 0, errors.New("hostabi: calibrate: module lacks spin or fuel")
	}
	clock, done := threadClock()
	if clock == nil {
		t0 := time.Now()
		clock, done = func() time.Duration { return time.Since(t0) }, func() {}
	}
	defer done()
	best := 0.0
	const n = 2_000_000
	for range 5 {
		g.Set(n)
		t0 := clock()
		if _, err := spin.Call(ctx); err == nil {
			return 0, errors.New("hostabi: calibrate: the spin loop ended without running out of fuel")
		}
		el := clock() - t0
		spent := float64(n - int64(g.Get()))
		if el > 0 {
			best = max(best, spent/el.Seconds())
		}
	}
	if best <= 0 {
		return 0, errors.New("hostabi: calibrate: no measurement")
	}
	return best, nil
}

// spinModule exports spin(): loop br 0 end, forever.
var spinModule = []byte{
	0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type () -> ()
	0x03, 0x02, 0x01, 0x00, // func 0: type 0
	0x07, 0x08, 0x01, 0x04, 's', 'p', 'i', 'n', 0x00, 0x00, // export "spin"
	0x0a, 0x09, 0x01, 0x07, 0x00, // code: 1 body, 7 bytes, no locals
	0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop br 0 end end
}
