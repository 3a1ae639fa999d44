package hostabi

import "time"

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
