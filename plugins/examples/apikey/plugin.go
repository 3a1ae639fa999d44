//go:build wasip1

// Command apikey is an example auth plugin: static API keys, stored in the
// plugin config only as SHA-256 digests, mapped to users.
//
//	config:
//	  header: X-API-Key      # default: Authorization: Bearer <key>
//	  keys:                  # sha256(key) in hex → user
//	    9f86d0…: alice
//	capabilities: [config, crypto]
package main

import (
	"encoding/hex"

	"github.com/safeclose/safeclose/plugins/sdk"
)

type config struct {
	Header string            `json:"header"`
	Keys   map[string]string `json:"keys"`
}

var conf *config

//go:wasmexport auth_handle
func authHandle() int64 {
	if conf == nil {
		c := &config{}
		if err := sdk.DecodeConfig(c); err != nil {
			return sdk.Deny(503)
		}
		conf = c
	}
	// The byte forms and the fixed-size hex buffer allocate nothing per
	// request (issue 12); the map lookup by string(hex[:]) does not copy.
	var key []byte
	var ok bool
	if conf.Header != "" {
		key, ok = sdk.HeaderBytes(conf.Header)
	} else {
		key, ok = sdk.BearerBytes()
	}
	if !ok || len(key) == 0 {
		return sdk.Deny(401)
	}
	sum := sdk.SHA256(key)
	var digest [64]byte
	hex.Encode(digest[:], sum[:])
	user, ok := conf.Keys[string(digest[:])]
	if !ok || sdk.SetSubject(user) != nil {
		return sdk.Deny(401)
	}
	return sdk.Allow
}
