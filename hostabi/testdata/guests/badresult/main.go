// Guest badresult returns values the ABI does not define, or allows
// without a subject.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

//go:wasmexport auth_handle
func authHandle() int64 {
	if _, ok := sdk.Header("X-Nosub"); ok {
		return sdk.Allow
	}
	return 7
}

func main() {}
