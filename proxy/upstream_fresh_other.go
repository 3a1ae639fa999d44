//go:build !unix

package proxy

import "errors"

// readFD reports "nothing pending" where a non-blocking read is not
// available: the check is a no-op there.
func readFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

// writeFD writes nothing there: sendLast leaves the request to the usual
// write.
func writeFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
