// Guest loop never returns when X-Loop is set.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

var sink int

//go:wasmexport auth_handle
func authHandle() int64 {
	if _, ok := sdk.Header("X-Loop"); ok {
		for i := 0; ; i++ {
			sink += i
		}
	}
	sdk.SetSubject("ok")
	return sdk.Allow
}

func main() {}
