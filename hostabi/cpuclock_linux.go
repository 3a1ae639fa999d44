package hostabi

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadClock returns a clock of the CPU time the calling OS thread has
// used, and a func to call when done with it, or nil when the platform has
// none. Calibration uses it so that a loaded machine (the thread waiting for
// a CPU) does not shrink fuel budgets.
func threadClock() (now func() time.Duration, done func()) {
	runtime.LockOSThread()
	now = func() time.Duration {
		var ts syscall.Timespec
		const clockThreadCPUTimeID = 3
		if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
			return -1
		}
		return time.Duration(ts.Nano())
	}
	if now() < 0 {
		runtime.UnlockOSThread()
		return nil, nil
	}
	return now, runtime.UnlockOSThread
}
