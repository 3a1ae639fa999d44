// Guest probe: reads every accessor and reports what it saw as claims, so
// the host side of each function is checked end to end.
package main

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/safeclose/safeclose/plugins/sdk"
)

//go:wasmexport auth_handle
func authHandle() int64 {
	claim := func(k, v string) {
		if err := sdk.SetClaim(k, v); err != nil {
			sdk.SetClaim("err-"+k, "rejected")
		}
	}
	claim("method", sdk.Method())
	claim("uri", sdk.URI())
	claim("path", sdk.Path())
	claim("multi", strings.Join(sdk.HeaderValues("X-Multi"), ","))
	claim("names", strconv.Itoa(len(sdk.HeaderNames())))
	sid, ok := sdk.Cookie("sid")
	claim("sid", sid+"|"+strconv.FormatBool(ok))
	claim("source", sdk.SourceAddr())
	claim("config", string(sdk.Config()))
	claim("body", string(sdk.Body()))
	claim("clock", strconv.FormatBool(sdk.Now().After(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))))
	n := 0
	if v, ok := sdk.KVGet("count"); ok {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	sdk.KVSet("count", []byte(strconv.Itoa(n)), time.Minute)
	claim("count", strconv.Itoa(n))
	sum := sdk.SHA256([]byte("abc"))
	claim("sha", hex.EncodeToString(sum[:4]))
	long := strings.Repeat("x", 3000) // bigger than the SDK's first buffer
	if v, ok := sdk.Header("X-Long"); ok {
		claim("long", strconv.FormatBool(v == long))
	}
	mac, _ := hex.DecodeString(func() string { v, _ := sdk.Header("X-Mac"); return v }())
	if ok, err := sdk.HMACSHA256Verify("hk", []byte("msg"), mac); err == nil {
		claim("hmac", strconv.FormatBool(ok))
	} else {
		claim("hmac", "nokey")
	}
	if tok, ok := sdk.Bearer(); ok {
		claim("jwt", strconv.Itoa(int(sdk.VerifyJWT(tok))))
		if sub, ok := sdk.JWTClaim("sub"); ok {
			claim("jwt-sub", sub)
		}
	}
	if sdk.SetClaim("Bad Name", "x") == nil {
		claim("badname", "accepted")
	}
	if sdk.SetSubject("evil\r\nX-Injected: 1") == nil {
		claim("inject", "accepted")
	}
	sdk.Log(sdk.LevelInfo, "probe ran")
	sdk.SetSubject("probe")
	return sdk.Allow
}

func main() {}
