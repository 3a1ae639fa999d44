//go:build unix

// Package cputime reads the CPU time the process has used, for benchmarks
// that report CPU per operation: on a shared machine it is steadier than a
// wall-clock rate, which moves with the neighbours' load.
package cputime

import (
	"syscall"
	"time"
)

// Process is the user and system CPU time of the whole process so far
// (every thread: the runtime's and the GC's too); 0 if it cannot be read.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
