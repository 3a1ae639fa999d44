package hostabi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 10.3: capability names have one home. Every name parses to a set
// with exactly that capability, String round-trips, and unknown names fail.
func TestParseCapabilities(t *testing.T) {
	t.Parallel()
	all := hostabi.CapabilityNames()
	for _, n := range all {
		c, err := hostabi.ParseCapabilities([]string{n})
		if err != nil || c.String() != n {
			t.Errorf("ParseCapabilities([%s]) = %q, %v; want %q", n, c, err, n)
		}
	}
	c, err := hostabi.ParseCapabilities(all)
	if err != nil || c != (hostabi.Capabilities{Config: true, Log: true, Clock: true, KV: true, Crypto: true, Body: true}) {
		t.Fatalf("ParseCapabilities(all) = %+v, %v; want every capability", c, err)
	}
	if got, want := c.String(), strings.Join(all, ","); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if c, err := hostabi.ParseCapabilities([]string{"", " log "}); err != nil || c != (hostabi.Capabilities{Log: true}) {
		t.Errorf(`ParseCapabilities(["", " log "]) = %+v, %v; want log only`, c, err)
	}
	if _, err := hostabi.ParseCapabilities([]string{"log", "network"}); !errors.Is(err, hostabi.ErrUnknownCapability) {
		t.Errorf("ParseCapabilities(network) = %v; want ErrUnknownCapability", err)
	}
}
