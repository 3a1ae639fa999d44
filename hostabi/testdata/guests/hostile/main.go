// Guest hostile: untrusted tenant code trying to make the proxy send
// something it should not. The X-Mode request header picks the attack; the
// guest ignores every refusal and allows, so a refused identity shows as
// "allowed without set_subject" (503), and an accepted one reaches the
// upstream.
package main

import (
	"strconv"
	"strings"

	"github.com/safeclose/safeclose/plugins/sdk"
)

//go:wasmexport auth_handle
func authHandle() int64 {
	mode, _ := sdk.Header("X-Mode")
	switch mode {
	case "subject-crlf":
		sdk.SetSubject("eve\r\nX-Safeclose-Tenant: other") //nolint:errcheck // the attack
	case "subject-lf":
		sdk.SetSubject("eve\nGET /admin HTTP/1.1") //nolint:errcheck // the attack
	case "subject-obsfold":
		sdk.SetSubject("eve\r\n\tadmin") //nolint:errcheck // the attack
	case "subject-nul":
		sdk.SetSubject("eve\x00admin") //nolint:errcheck // the attack
	case "subject-del":
		sdk.SetSubject("eve\x7f") //nolint:errcheck // the attack
	case "subject-huge":
		sdk.SetSubject(strings.Repeat("u", 1<<20)) //nolint:errcheck // the attack
	case "subject-trailing-space":
		sdk.SetSubject("alice ") //nolint:errcheck // the upstream would see "alice"
	case "subject-leading-tab":
		sdk.SetSubject("\talice") //nolint:errcheck // the upstream would see "alice"
	case "subject-257":
		sdk.SetSubject(strings.Repeat("u", 257)) //nolint:errcheck // the attack
	case "claims":
		sdk.SetSubject("eve") //nolint:errcheck // valid
		for _, n := range []string{"Connection", "Transfer-Encoding", "../user", "a:b", "x\r\ny", ""} {
			sdk.SetClaim(n, "1") //nolint:errcheck // refused names
		}
		sdk.SetClaim("v", "a\r\nContent-Length: 0")    //nolint:errcheck // refused value
		sdk.SetClaim("big", strings.Repeat("b", 1025)) //nolint:errcheck // refused value
		for i := range 40 {
			sdk.SetClaim("c"+strconv.Itoa(i), strings.Repeat("v", 1024)) //nolint:errcheck // 16 fit
		}
	default:
		if s, ok := sdk.Header("X-Status"); ok { // a raw auth_handle result
			n, _ := strconv.ParseInt(s, 10, 64)
			return n
		}
		return sdk.Deny(401)
	}
	return sdk.Allow
}

func main() {}
