package hostabi

import (
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// SetCallClock replaces the clock call deadlines are measured with, so a
// test can make a call overrun its deadline without a slow guest. Call it
// before the plugin's first call.
func SetCallClock(p *Plugin, now func() time.Time) {
	p.clock = func() time.Duration { return now().Sub(p.epoch) }
}

// SetPenaltyClock replaces the penalty box's clock, so a test can end a
// backoff window without sleeping. Call it before the plugin's first call.
func SetPenaltyClock(p *Plugin, now func() time.Time) { p.box.now = now }

// EnforceNoneForBench runs guests without any deadline enforcement: the
// floor the enforced modes are measured against. Benchmarks only.
const EnforceNoneForBench = enforceNone

// InstanceMemory returns the number of live instances and the bytes of
// linear memory they hold in total.
func InstanceMemory(p *Plugin) (n int, bytes uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for in := range p.all {
		n++
		bytes += uint64(in.mem.Size())
	}
	return n, bytes
}

// CompiledModules returns how many compiled modules (guests and host
// modules) wazero's engine behind e's compilation cache holds in memory. It
// reads wazero's unexported fields (v1.12: cache.engs), so it is for tests
// only; 0 once every plugin of e is closed.
func CompiledModules(t testing.TB, e *Engine) uint32 {
	t.Helper()
	v := reflect.ValueOf(e.cache).Elem().FieldByName("engs")
	if !v.IsValid() {
		t.Fatal("wazero's compilation cache has no engs field: update CompiledModules")
	}
	v = reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
	var n uint32
	for i := range v.Len() {
		if eng := v.Index(i); !eng.IsNil() {
			n += eng.MethodByName("CompiledModuleCount").Call(nil)[0].Interface().(uint32)
		}
	}
	return n
}

// LastCallFuel returns the fuel the last call on p's only instance burned
// (p must have pool size 1 and run under EnforceFuel): a count of the
// guest's loop iterations and calls, the same on any machine.
func LastCallFuel(p *Plugin) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.all) != 1 || !p.fuelOn {
		return 0, false
	}
	for in := range p.all {
		return p.burned(in), true
	}
	return 0, false
}
