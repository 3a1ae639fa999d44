// Guest oom allocates without bound when X-OOM is set.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

var keep [][]byte

//go:wasmexport auth_handle
func authHandle() int64 {
	if _, ok := sdk.Header("X-OOM"); ok {
		for {
			b := make([]byte, 1<<20)
			b[0] = 1
			keep = append(keep, b)
		}
	}
	sdk.SetSubject("ok")
	return sdk.Allow
}

func main() {}
