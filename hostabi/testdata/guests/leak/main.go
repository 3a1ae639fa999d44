// Guest leak keeps 64 KiB more on every call in a global slice that is
// never freed, as a plugin with an unbounded cache does, and allows as "ok".
// An instance therefore reaches its memory cap after a number of calls that
// depends only on the cap, so every instance of a pool fills up at about the
// same call.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

var keep [][]byte

//go:wasmexport auth_handle
func authHandle() int64 {
	b := make([]byte, 64<<10)
	b[0] = 1
	keep = append(keep, b)
	sdk.SetSubject("ok")
	return sdk.Allow
}

func main() {}
