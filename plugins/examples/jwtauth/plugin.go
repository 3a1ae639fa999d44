//go:build wasip1

// Command jwtauth is an example auth plugin: the session is a JWT in a
// cookie or an "Authorization: Bearer" header, verified in the host
// (HS256 with a tenant secret, or ES256/RS256 with a JWKS from the plugin
// config). The user is the token's "sub"; listed claims go upstream.
//
// Plugin config (YAML in the tenant config):
//
//	config:
//	  cookie: session        # cookie holding the JWT; default "session"
//	  claims: [email, role]  # claims passed upstream as X-Safeclose-Claim-*
//	  jwt: {issuer: https://auth.example.com, audience: app}  # read by the host
//	secrets: {main: env:APP_JWT_SECRET}  # HS256 keys, by kid (or the only one)
//	capabilities: [config, crypto, log]
package main

import (
	"strconv"

	"github.com/safeclose/safeclose/plugins/sdk"
)

type config struct {
	Cookie string   `json:"cookie"`
	Claims []string `json:"claims"`
}

var conf *config

func loadConfig() *config {
	if conf == nil {
		c := &config{Cookie: "session"}
		if err := sdk.DecodeConfig(c); err != nil {
			sdk.Log(sdk.LevelError, "jwtauth: bad config: "+err.Error())
		}
		conf = c
	}
	return conf
}

//go:wasmexport auth_handle
func authHandle() int64 {
	c := loadConfig()
	// The byte forms alias the SDK's buffer and allocate nothing, so the
	// guest's heap does not grow per request and its GC never runs on the
	// request path (issue 12). Each value is used before the next SDK call.
	tok, ok := sdk.BearerBytes()
	if !ok {
		if tok, ok = sdk.CookieBytes(c.Cookie); !ok {
			return sdk.Deny(401)
		}
	}
	if r := sdk.VerifyJWTBytes(tok); r != sdk.JWTValid {
		sdk.Log(sdk.LevelDebug, "jwtauth: token refused, code "+strconv.Itoa(int(r)))
		return sdk.Deny(401)
	}
	sub, ok := sdk.JWTClaimBytes("sub")
	if !ok || sdk.SetSubjectBytes(sub) != nil {
		return sdk.Deny(401)
	}
	for _, name := range c.Claims {
		if v, ok := sdk.JWTClaim(name); ok {
			_ = sdk.SetClaim(name, v) // an oversized claim is simply not passed
		}
	}
	return sdk.Allow
}
