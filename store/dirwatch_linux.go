package store

import (
	"errors"
	"os"
	"syscall"
)

// dirWatch says whether a directory's entries may have changed since it was
// last asked: inotify events for entries created, deleted or moved in or
// out, read without blocking. The kernel queues an event inside the system
// call that creates the file, so a file created before changed is called is
// reported by that call or an earlier one.
//
// changed is called by one sync round at a time (groupSync), so its buffer
// and results live in the struct: a 4 KiB buffer captured by the read
// closure escaped to the heap on every round.
type dirWatch struct {
	f            *os.File // closing it is safe while a read is under way
	rc           syscall.RawConn
	drainFn      func(fd uintptr) bool // w.drain, made once
	buf          [4096]byte
	seen, failed bool
}

// newDirWatch watches dir; nil when inotify is unavailable (then syncFiles
// lists the directory every round, as without a watch).
func newDirWatch(dir string) *dirWatch {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	const mask = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	if _, err := syscall.InotifyAddWatch(fd, dir, mask); err != nil {
		syscall.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	w := &dirWatch{f: f, rc: rc}
	w.drainFn = w.drain
	return w
}

// changed drains the pending events and reports whether there were any
// (an overflow of the kernel's queue is an event too). A read that fails
// otherwise than "nothing pending" counts as a change, so the caller looks
// at the directory itself.
func (w *dirWatch) changed() bool {
	w.seen, w.failed = false, false
	err := w.rc.Read(w.drainFn)
	return w.seen || w.failed || err != nil
}

// drain reads every pending event without waiting (rc.Read's callback).
func (w *dirWatch) drain(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), w.buf[:])
		switch {
		case n > 0:
			w.seen = true
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			return true // drained; never wait for more
		default:
			w.failed = true
			return true
		}
	}
}

func (w *dirWatch) close() { w.f.Close() }
