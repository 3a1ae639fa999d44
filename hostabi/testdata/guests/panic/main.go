// Guest panic panics on the X-Panic header, else allows as "ok".
package main

import "github.com/safeclose/safeclose/plugins/sdk"

//go:wasmexport auth_handle
func authHandle() int64 {
	if _, ok := sdk.Header("X-Panic"); ok {
		panic("guest panic on purpose")
	}
	sdk.SetSubject("ok")
	return sdk.Allow
}

func main() {}
