//go:build unix

package hostabi_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the whole process has used (every thread, so
// wazero's per-call watcher goroutines and the GC count too). On a shared,
// overloaded machine it measures a call's cost where wall time per op
// measures the machine's load.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
