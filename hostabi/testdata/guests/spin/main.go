// Guest spin burns CPU in a loop that calls nothing (no host function, so
// the Go scheduler cannot take its thread back) for X-Iters iterations,
// then allows as "spin". A tenant whose plugin does this stays within its
// deadline and never fails, so its penalty box never opens.
package main

import (
	"strconv"

	"github.com/safeclose/safeclose/plugins/sdk"
)

var sink uint64

//go:wasmexport auth_handle
func authHandle() int64 {
	s, _ := sdk.Header("X-Iters")
	n, _ := strconv.ParseUint(s, 10, 64)
	x := sink
	for i := uint64(0); i < n; i++ {
		x = x*6364136223846793005 + i
	}
	sink = x
	sdk.SetSubject("spin")
	return sdk.Allow
}

func main() {}
