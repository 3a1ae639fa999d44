//go:build !linux

package hostabi

import "time"

// threadClock: no per-thread CPU clock here; calibration uses wall time.
func threadClock() (now func() time.Duration, done func()) { return nil, nil }
