//go:build unix

package proxy

import "syscall"

func readFD(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }

func writeFD(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
