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
	var key string
	var ok bool
	if conf.Header != "" {
		key, ok = sdk.Header(conf.Header)
	} else {
		key, ok = sdk.Bearer()
	}
	if !ok || key == "" {
		return sdk.Deny(401)
	}
	sum := sdk.SHA256([]byte(key))
	user, ok := conf.Keys[hex.EncodeToString(sum[:])]
	if !ok || sdk.SetSubject(user) != nil {
		return sdk.Deny(401)
	}
	return sdk.Allow
}
