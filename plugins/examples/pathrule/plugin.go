//go:build wasip1

// Command pathrule is an example of a tenant rule: an internal tool that
// only some networks may reach, and only on some paths. A request from an
// allowed source range to an allowed path prefix is let through as the
// user "net:<ip>"; anything else is denied with 403. The prefix check is
// sound because the host hands the plugin the normalised path the upstream
// also gets (no "..", "//" or encoded dots; hostabi/ABI.md §4.1).
//
//	config:
//	  allow_cidrs: [10.0.0.0/8, 127.0.0.0/8]
//	  allow_paths: [/internal/, /health]
//	capabilities: [config]
package main

import (
	"net/netip"
	"strings"

	"github.com/safeclose/safeclose/plugins/sdk"
)

type config struct {
	AllowCIDRs []string `json:"allow_cidrs"`
	AllowPaths []string `json:"allow_paths"`
}

var (
	loaded   bool
	prefixes []netip.Prefix
	paths    []string
)

//go:wasmexport auth_handle
func authHandle() int64 {
	if !loaded {
		var c config
		if err := sdk.DecodeConfig(&c); err != nil {
			return sdk.Deny(503)
		}
		for _, s := range c.AllowCIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return sdk.Deny(503)
			}
			prefixes = append(prefixes, p)
		}
		paths, loaded = c.AllowPaths, true
	}
	ap, err := netip.ParseAddrPort(sdk.SourceAddr())
	if err != nil {
		return sdk.Deny(403)
	}
	ip := ap.Addr().Unmap()
	inRange := false
	for _, p := range prefixes {
		if p.Contains(ip) {
			inRange = true
			break
		}
	}
	if !inRange {
		return sdk.Deny(403)
	}
	path := sdk.Path()
	for _, pre := range paths {
		if strings.HasPrefix(path, pre) {
			if sdk.SetSubject("net:"+ip.String()) != nil {
				return sdk.Deny(403)
			}
			return sdk.Allow
		}
	}
	return sdk.Deny(403)
}
