// Guest deeprec recurses without bound when X-Recurse is set: its Go stack
// (in linear memory) and wazero's native stack both grow until one limit
// stops it.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

var sink int

//go:noinline
func recurse(n int) int {
	var pad [16]int
	pad[n%16] = n
	return recurse(n+1) + pad[(n+1)%16]
}

//go:wasmexport auth_handle
func authHandle() int64 {
	if _, ok := sdk.Header("X-Recurse"); ok {
		sink = recurse(0)
	}
	sdk.SetSubject("ok")
	return sdk.Allow
}

func main() {}
