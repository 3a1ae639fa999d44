//go:build wasip1

// Command authplugin is the demo web app's Safeclose auth plugin: the
// example jwtauth plugin (plugins/examples/jwtauth: a session JWT from a
// cookie or an "Authorization: Bearer" header, verified in the host) plus a
// short list of public routes, so that a browser without a session can load
// the app's page and bundle and sign in. Safeclose asks the tenant's
// authenticator about every request it proxies; jwtauth alone would answer
// 401 to the sign-in page itself.
//
// A request to a public route without a valid session is let through as the
// subject "anonymous" with the claim public=true (X-Safeclose-Claim-Public
// upstream, set by Safeclose only); the app must treat such a request as
// signed out. Every other route, Safeclose's own /api/plaid/* included,
// still needs a valid session.
//
//	config:
//	  cookie: session                 # default "session"
//	  claims: [name]                  # passed upstream as X-Safeclose-Claim-*
//	  public: ["GET /", "GET /app.js", "POST /signin"]  # exact method and path
//	  jwt: {issuer: ..., audience: ...}                  # read by the host
//	secrets: {main: env:WEBAPP_SESSION_KEY}               # HS256 key
//	capabilities: [config, crypto, log]
package main

import (
	"strings"

	"github.com/safeclose/safeclose/plugins/sdk"
)

type config struct {
	Cookie string   `json:"cookie"`
	Claims []string `json:"claims"`
	Public []string `json:"public"`
}

var conf *config

func loadConfig() *config {
	if conf == nil {
		c := &config{Cookie: "session"}
		if err := sdk.DecodeConfig(c); err != nil {
			sdk.Log(sdk.LevelError, "authplugin: bad config: "+err.Error())
		}
		conf = c
	}
	return conf
}

// session verifies the request's session token, if any, and sets the
// identity from it.
func session(c *config) bool {
	tok, ok := sdk.Bearer()
	if !ok {
		if tok, ok = sdk.Cookie(c.Cookie); !ok {
			return false
		}
	}
	if sdk.VerifyJWT(tok) != sdk.JWTValid {
		return false
	}
	sub, ok := sdk.JWTClaim("sub")
	if !ok || sub == "" || sdk.SetSubject(sub) != nil {
		return false
	}
	for _, name := range c.Claims {
		if v, ok := sdk.JWTClaim(name); ok {
			_ = sdk.SetClaim(name, v) // an oversized claim is simply not passed
		}
	}
	return true
}

func public(c *config) bool {
	method, path := sdk.Method(), sdk.Path()
	for _, p := range c.Public {
		if m, pp, ok := strings.Cut(p, " "); ok && strings.EqualFold(m, method) && pp == path {
			return true
		}
	}
	return false
}

//go:wasmexport auth_handle
func authHandle() int64 {
	c := loadConfig()
	if session(c) {
		return sdk.Allow
	}
	if public(c) && sdk.SetSubject("anonymous") == nil && sdk.SetClaim("public", "true") == nil {
		return sdk.Allow
	}
	return sdk.Deny(401)
}
