package main

import (
	"strconv"
	"testing"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/proxy"
	"github.com/safeclose/safeclose/store"
)

// Issue 10.3: each default has one home, the lowest package that applies
// it (proxy.Default…, hostabi.Default…, store.Default…). configs imports
// nothing from the module, so configs.Default repeats the values the config
// file starts from; this test holds the two together, and holds the CLI
// flag defaults to the same names.
func TestConfigDefaultsMatchPackages(t *testing.T) {
	t.Parallel()
	c := configs.Default()
	tests := []struct {
		field     string
		got, want any
	}{
		{"limits.max_body_bytes", c.Limits.MaxBodyBytes, proxy.DefaultMaxBodyBytes},
		{"limits.read_timeout", c.Limits.ReadTimeout.Std(), proxy.DefaultReadTimeout},
		{"limits.write_timeout", c.Limits.WriteTimeout.Std(), proxy.DefaultWriteTimeout},
		{"limits.idle_timeout", c.Limits.IdleTimeout.Std(), proxy.DefaultIdleTimeout},
		{"limits.upstream_conns", c.Limits.UpstreamConns, proxy.DefaultUpstreamConns},
		{"limits.plaid_timeout", c.Limits.PlaidTimeout.Std(), proxy.DefaultPlaidTimeout},
		{"limits.max_response_bytes", c.Limits.MaxResponseBytes, int64(proxy.DefaultMaxResponseBytes)},
		{"limits.max_websockets", c.Limits.MaxWebSockets, proxy.DefaultMaxWebSockets},
		{"limits.websocket_idle_timeout", c.Limits.WebSocketIdleTimeout.Std(), proxy.DefaultWebSocketIdleTimeout},
		{"limits.max_conns", c.Limits.MaxConns, proxy.DefaultMaxConns},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, proxy.DefaultMaxHeaderBytes},
		{"limits.plaid_calls_per_user", c.Limits.PlaidCallsPerUser, proxy.DefaultPlaidCallsPerUser},
		{"webhooks.max_body_bytes", c.Webhooks.MaxBodyBytes, proxy.DefaultWebhookMaxBodyBytes},
		{"webhooks.workers", c.Webhooks.Workers, proxy.DefaultWebhookWorkers},
		{"webhooks.max_attempts", c.Webhooks.MaxAttempts, proxy.DefaultWebhookMaxAttempts},
		{"webhooks.lease", c.Webhooks.Lease.Std(), proxy.DefaultWebhookLease},
		{"webhooks.backoff", c.Webhooks.Backoff.Std(), proxy.DefaultWebhookBackoff},
		{"webhooks.max_backoff", c.Webhooks.MaxBackoff.Std(), proxy.DefaultWebhookMaxBackoff},
		{"webhooks.intake_first_at", c.Webhooks.IntakeFirstAt, proxy.DefaultWebhookIntakeFirst},
		{"webhooks.dedupe_ttl", c.Webhooks.DedupeTTL.Std(), store.DefaultDedupeTTL},
		// Plugin limits: configs validates against its own copy of the maxima.
		{"configs.MaxMemoryPages", configs.MaxMemoryPages, hostabi.MaxMemoryPages},
		{"configs.MaxPoolSize", configs.MaxPoolSize, hostabi.MaxPoolSize},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("configs.Default() %s = %v (%T), want %v (%T)", tt.field, tt.got, tt.got, tt.want, tt.want)
		}
	}
}

// Issue 10.3: the CLI's flag defaults are the packages' defaults, not
// copies of them.
func TestFlagDefaultsMatchPackages(t *testing.T) {
	t.Parallel()
	var pf pluginFlags
	var ro pluginRunOpts
	emu := configs.Default().Emulator
	var so sandboxOpts
	tests := []struct {
		set        string
		flag, want string
	}{
		{"plugin check", "timeout", hostabi.DefaultTimeout.String()},
		{"plugin check", "memory-pages", strconv.Itoa(hostabi.DefaultMemoryPages)},
		{"plugin run", "timeout", hostabi.DefaultTimeout.String()},
		{"plugin run", "memory-pages", strconv.Itoa(hostabi.DefaultMemoryPages)},
		{"sandbox", "addr", emu.Listen},
		{"sandbox", "client-id", emu.ClientID},
		{"sandbox", "secret", emu.Secret},
	}
	for _, tt := range tests {
		fs := pluginCheckFlagSet(&pf)
		switch tt.set {
		case "plugin run":
			fs = pluginRunFlagSet(&pf, &ro)
		case "sandbox":
			fs = sandboxFlagSet(&so)
		}
		f := fs.Lookup(tt.flag)
		if f == nil {
			t.Errorf("%s: no -%s flag", tt.set, tt.flag)
			continue
		}
		if f.DefValue != tt.want {
			t.Errorf("%s -%s default = %q, want %q", tt.set, tt.flag, f.DefValue, tt.want)
		}
	}
}
