// Package sdk is the Go guest SDK for Safeclose plugins. It hides the
// safeclose_v1 host ABI (hostabi/ABI.md) behind a small typed API.
//
// Build a plugin with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o auth.wasm .
//
// and export the handler with //go:wasmexport:
//
//	//go:wasmexport auth_handle
//	func authHandle() int64 {
//		if tok, ok := sdk.Bearer(); ok && sdk.VerifyJWT(tok) == sdk.JWTValid {
//			sub, _ := sdk.JWTClaim("sub")
//			sdk.SetSubject(sub)
//			return sdk.Allow
//		}
//		return sdk.Deny(401)
//	}
//
//	func main() {}
//
// The SDK reuses one scratch buffer, so a plugin that only compares bytes
// allocates nothing per request. Functions that return strings copy.
//
// The package compiles only for GOOS=wasip1; it imports hostabi/abi and the
// standard library, nothing else.
package sdk
