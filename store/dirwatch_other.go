//go:build !linux

package store

// dirWatch is inotify's on Linux (dirwatch_linux.go); elsewhere there is
// none and syncFiles lists the directory every round.
type dirWatch struct{}

func newDirWatch(string) *dirWatch { return nil }
func (*dirWatch) changed() bool    { return true }
func (*dirWatch) close()           {}
