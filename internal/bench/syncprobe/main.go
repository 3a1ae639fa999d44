// Command syncprobe measures what one durable write round costs on a
// disk, the way each write-ahead log could make it: Badger's (a file
// mapped into memory, grown sparse, msync), a pre-zeroed file written with
// pwrite and fdatasync, and a file appended to with write and fdatasync.
// It reports the process's CPU and the wall time per round: the CPU of
// the sync round is part of every webhook's cost (issue 12: ~19 CPU-µs a
// webhook at ~7 a round), so it says what an intake journal of our own
// would save (RATIONALE.md "Why a burst of webhooks is answered first").
//
//	go run ./internal/bench/syncprobe -dir ./data -rounds 2000
//
// Run it on the disk the data directory lives on; it writes 64 MiB files
// into a temporary directory under -dir and removes them.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	rounds := flag.Int("rounds", 2000, "write rounds per way")
	chunk := flag.Int("chunk", 8192, "bytes written per round (~7 webhooks)")
	flag.Parse()
	const size = 64 << 20
	if *rounds < 1 || *chunk < 1 || *rounds**chunk > size {
		log.Fatalf("syncprobe: rounds × chunk must be in 1..%d", size)
	}
	tmp, err := os.MkdirTemp(*dir, "syncprobe-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	buf := make([]byte, *chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	ways := []struct {
		name  string
		zero  bool // the file is written with zeros and synced first
		mmap  bool
		round func(f *os.File, m []byte, r int) error
	}{
		{"mapped, sparse, msync (Badger's WAL)", false, true, func(_ *os.File, m []byte, r int) error {
			copy(m[r**chunk:], buf)
			return msync(m)
		}},
		{"mapped, pre-zeroed, msync", true, true, func(_ *os.File, m []byte, r int) error {
			copy(m[r**chunk:], buf)
			return msync(m)
		}},
		{"pre-zeroed, pwrite + fdatasync", true, false, func(f *os.File, _ []byte, r int) error {
			if _, err := f.WriteAt(buf, int64(r**chunk)); err != nil {
				return err
			}
			return syscall.Fdatasync(int(f.Fd()))
		}},
		{"appended, write + fdatasync", false, false, func(f *os.File, _ []byte, _ int) error {
			if _, err := f.Write(buf); err != nil {
				return err
			}
			return syscall.Fdatasync(int(f.Fd()))
		}},
	}
	fmt.Printf("%d rounds of %d bytes in %s\n", *rounds, *chunk, tmp)
	for i, w := range ways {
		f, err := os.Create(fmt.Sprintf("%s/%d.log", tmp, i))
		if err != nil {
			log.Fatal(err)
		}
		if w.zero {
			z := make([]byte, 1<<20)
			for range size >> 20 {
				if _, err := f.Write(z); err != nil {
					log.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				log.Fatal(err)
			}
		}
		var m []byte
		if w.mmap {
			if err := f.Truncate(size); err != nil {
				log.Fatal(err)
			}
			if m, err = syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED); err != nil {
				log.Fatal(err)
			}
		}
		c0, t0 := cpu(), time.Now()
		for r := range *rounds {
			if err := w.round(f, m, r); err != nil {
				log.Fatal(err)
			}
		}
		c, t := cpu()-c0, time.Since(t0)
		fmt.Printf("%-38s %7.1f CPU-µs a round %7.1f µs a round\n", w.name, float64(c.Microseconds())/float64(*rounds), float64(t.Microseconds())/float64(*rounds))
		if m != nil {
			_ = syscall.Munmap(m)
		}
		_ = f.Close()
	}
}

func msync(m []byte) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), syscall.MS_SYNC); e != 0 {
		return e
	}
	return nil
}

// cpu is the process's user and system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
