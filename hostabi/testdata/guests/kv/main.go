// Guest kv: an auth plugin that drives the key/value store from request
// headers (X-Op, X-Key, X-Val) and reports what it got as claims, so tests
// can check kv_get, kv_set and kv_delete end to end, on every store.
//
//	X-Op: set      kv_set(X-Key, X-Val)   claim set=ok|rejected|unavailable
//	X-Op: del      kv_delete(X-Key)       claim del=ok|unavailable
//	X-Op: get      KVLookup(X-Key)        claims found, value; an unavailable store denies with 503
//	X-Op: strict   KVGet(X-Key)           claims found, value; an unavailable store traps (fail closed)
package main

import (
	"errors"
	"strconv"

	"github.com/safeclose/safeclose/plugins/sdk"
)

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, sdk.ErrUnavailable):
		return "unavailable"
	}
	return "rejected"
}

//go:wasmexport auth_handle
func authHandle() int64 {
	op, _ := sdk.Header("X-Op")
	key, _ := sdk.Header("X-Key")
	switch op {
	case "set":
		val, _ := sdk.Header("X-Val")
		sdk.SetClaim("set", result(sdk.KVSet(key, []byte(val), 0)))
	case "del":
		sdk.SetClaim("del", result(sdk.KVDelete(key)))
	case "get":
		v, ok, err := sdk.KVLookup(key)
		if err != nil {
			return sdk.Deny(503)
		}
		sdk.SetClaim("found", strconv.FormatBool(ok))
		sdk.SetClaim("value", string(v))
	case "strict":
		v, ok := sdk.KVGet(key)
		sdk.SetClaim("found", strconv.FormatBool(ok))
		sdk.SetClaim("value", string(v))
	}
	sdk.SetSubject("kv")
	return sdk.Allow
}

func main() {}
