// Guest sdkallocs counts the guest heap allocations of jwtauth's request
// path: 100 rounds with the SDK's byte forms (claim "bytes") and 100 with
// its string forms (claim "strings"), and of apikey's (claim "digest"), from
// the Go runtime's own counter.
// Issue 12: an allocation per request grows the guest heap until its GC
// runs inside a request.
package main

import (
	"encoding/hex"
	"runtime"
	"strconv"

	"github.com/safeclose/safeclose/plugins/sdk"
)

var before, after runtime.MemStats

//go:wasmexport auth_handle
func authHandle() int64 {
	runtime.ReadMemStats(&before)
	ok := true
	for range 100 {
		ok = ok && viaBytes()
	}
	runtime.ReadMemStats(&after)
	nBytes := after.Mallocs - before.Mallocs
	runtime.ReadMemStats(&before)
	for range 100 {
		ok = ok && viaStrings()
	}
	runtime.ReadMemStats(&after)
	nStrings := after.Mallocs - before.Mallocs
	runtime.ReadMemStats(&before)
	for range 100 {
		ok = ok && apikey()
	}
	runtime.ReadMemStats(&after)
	nDigest := after.Mallocs - before.Mallocs
	if !ok {
		return sdk.Deny(401)
	}
	sdk.SetClaim("bytes", strconv.FormatUint(nBytes, 10))
	sdk.SetClaim("strings", strconv.FormatUint(nStrings, 10))
	sdk.SetClaim("digest", strconv.FormatUint(nDigest, 10))
	return sdk.Allow
}

// viaBytes is jwtauth's path.
func viaBytes() bool {
	tok, ok := sdk.BearerBytes()
	if !ok {
		if tok, ok = sdk.CookieBytes("session"); !ok {
			return false
		}
	}
	if sdk.VerifyJWTBytes(tok) != sdk.JWTValid {
		return false
	}
	sub, ok := sdk.JWTClaimBytes("sub")
	return ok && sdk.SetSubjectBytes(sub) == nil
}

// apikey is the apikey example's path: the token's SHA-256 in hex, looked
// up in a map.
func apikey() bool {
	tok, ok := sdk.BearerBytes()
	if !ok {
		tok, ok = sdk.CookieBytes("session")
	}
	if !ok {
		return false
	}
	sum := sdk.SHA256(tok)
	var digest [64]byte
	hex.Encode(digest[:], sum[:])
	_, known := keys[string(digest[:])]
	return !known && sdk.SetSubject("alice") == nil
}

var keys = map[string]string{"00": "nobody"}

// viaStrings is the same with the copying forms.
func viaStrings() bool {
	tok, ok := sdk.Bearer()
	if !ok {
		if tok, ok = sdk.Cookie("session"); !ok {
			return false
		}
	}
	if sdk.VerifyJWT(tok) != sdk.JWTValid {
		return false
	}
	sub, ok := sdk.JWTClaim("sub")
	return ok && sdk.SetSubject(sub) == nil
}

func main() {}
