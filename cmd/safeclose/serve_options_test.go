package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/safeclose/safeclose/configs"
)

// webhooks.source_ips reaches the proxy as prefixes; unset, it is empty
// (any sender).
func TestWebhookOptionsSourceIPs(t *testing.T) {
	t.Parallel()
	cfg := configs.Default()
	if got := webhookOptions(&cfg).SourceIPs; len(got) != 0 {
		t.Fatalf("default SourceIPs = %v, want none", got)
	}
	cfg.Webhooks.SourceIPs = []string{"52.21.26.131", "2001:db8::/32"}
	want := []netip.Prefix{netip.MustParsePrefix("52.21.26.131/32"), netip.MustParsePrefix("2001:db8::/32")}
	if got := webhookOptions(&cfg).SourceIPs; !slices.Equal(got, want) {
		t.Fatalf("SourceIPs = %v, want %v", got, want)
	}
}
