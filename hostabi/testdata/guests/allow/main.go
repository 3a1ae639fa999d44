// Guest allow: the user is the X-User header; X-Role becomes a claim;
// "blocked" is denied with 403 and no header with 401.
package main

import "github.com/safeclose/safeclose/plugins/sdk"

//go:wasmexport auth_handle
func authHandle() int64 {
	u, ok := sdk.HeaderBytes("X-User")
	if !ok || len(u) == 0 {
		return sdk.Deny(401)
	}
	if string(u) == "blocked" {
		return sdk.Deny(403)
	}
	if sdk.SetSubject(string(u)) != nil {
		return sdk.Deny(400)
	}
	if r, ok := sdk.Header("X-Role"); ok {
		if sdk.SetClaim("role", r) != nil {
			return sdk.Deny(400)
		}
	}
	return sdk.Allow
}

func main() {}
