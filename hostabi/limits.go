package hostabi

import (
	"fmt"
	"runtime"
	"time"
)

// Resource limits of one plugin. A plugin's worst case is
// PoolSize × MemoryLimitPages × 64 KiB of guest linear memory (a Go guest's
// goroutine stacks and heap both live there), plus wazero's native call
// stack of each running call; see ABI.md §5 "Limits".
const (
	// DefaultMemoryPages is the memory cap when PluginOptions leaves it zero
	// (32 MiB).
	DefaultMemoryPages = 512
	// MaxMemoryPages is the largest memory cap Load accepts (64 MiB). It
	// also bounds what one memory.grow can copy, so a grow cannot run far
	// past the call's deadline.
	MaxMemoryPages = 1024
	// MaxPoolSize is the most instances a plugin keeps. Calls are CPU-bound
	// and never block on I/O, so instances beyond the cores add memory, not
	// throughput.
	MaxPoolSize = 16
	// DefaultTimeout is the deadline of one call when PluginOptions leaves
	// Timeout zero.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultJWTLeeway is the clock skew jwt_verify allows for exp and nbf
	// when JWTOptions leaves Leeway zero.
	DefaultJWTLeeway = 30 * time.Second
)

// limits fills the zero-value defaults of o's limits and refuses values out
// of range, so no caller (the config, the CLI) can make wazero panic or a
// tenant reserve unbounded memory.
func (o *PluginOptions) limits() error {
	switch {
	case o.MemoryLimitPages == 0:
		o.MemoryLimitPages = DefaultMemoryPages
	case o.MemoryLimitPages > MaxMemoryPages:
		return fmt.Errorf("%w: memory limit %d pages, maximum %d (64 MiB)", ErrLimits, o.MemoryLimitPages, MaxMemoryPages)
	}
	switch {
	case o.PoolSize < 0 || o.PoolSize > MaxPoolSize:
		return fmt.Errorf("%w: pool size %d, want 0..%d", ErrLimits, o.PoolSize, MaxPoolSize)
	case o.PoolSize == 0:
		o.PoolSize = min(runtime.GOMAXPROCS(0), MaxPoolSize)
	}
	switch {
	case o.CPUShare < 0 || o.CPUShare > 1024:
		return fmt.Errorf("%w: cpu share %g cores, want 0..1024", ErrLimits, o.CPUShare)
	case o.CPUShare == 0:
		o.CPUShare = DefaultCPUShare()
	}
	if o.PenaltyAfter < 0 || o.PenaltyBackoff < 0 || o.PenaltyMaxBackoff < 0 {
		return fmt.Errorf("%w: negative penalty box setting", ErrLimits)
	}
	if o.PenaltyAfter == 0 {
		o.PenaltyAfter = DefaultPenaltyAfter
	}
	if o.PenaltyBackoff == 0 {
		o.PenaltyBackoff = DefaultPenaltyBackoff
	}
	if o.PenaltyMaxBackoff == 0 {
		o.PenaltyMaxBackoff = max(DefaultPenaltyMaxBackoff, o.PenaltyBackoff)
	}
	return nil
}
