//go:build !unix

package hostabi

import "io/fs"

// checkPrivateDir: no owner or mode bits to check here.
func checkPrivateDir(string) error { return nil }

func ownedPrivately(string, fs.FileInfo) error { return nil }
