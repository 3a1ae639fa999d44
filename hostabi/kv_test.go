package hostabi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

func kvCall(t *testing.T, p *hostabi.Plugin, op, key, val string) map[string]string {
	t.Helper()
	d, err := p.Authenticate(context.Background(), &req{headers: hdr("X-Op", op, "X-Key", key, "X-Val", val)})
	if err != nil {
		t.Fatalf("%s %q: %v", op, key, err)
	}
	if !d.Allow {
		t.Fatalf("%s %q denied with %d", op, key, d.Status)
	}
	return claims(d)
}

// Issue 11.1: the KV store is a contract (Options.KV). Two engines given
// the same store (as two replicas on one database are) share each tenant's
// data; tenants stay apart; the ABI's limits and quota hold.
func TestKVStoreOption(t *testing.T) {
	t.Parallel()
	kv := hostabi.NewMemoryKV(nil)
	engine := func() *hostabi.Engine {
		e, err := hostabi.NewEngine(context.Background(), hostabi.Options{CacheDir: cacheDir, KV: kv})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(context.Background()) })
		return e
	}
	caps := hostabi.Capabilities{KV: true}
	a := load(t, engine(), "kv", hostabi.PluginOptions{Caps: caps})
	b := load(t, engine(), "kv", hostabi.PluginOptions{Caps: caps})
	other := load(t, engine(), "kv", hostabi.PluginOptions{Tenant: "t2", Caps: caps})

	if c := kvCall(t, a, "set", "k", "v1"); c["set"] != "ok" {
		t.Fatalf("set = %v", c)
	}
	if c := kvCall(t, b, "get", "k", ""); c["found"] != "true" || c["value"] != "v1" {
		t.Fatalf("get on the other engine = %v, want v1", c)
	}
	if c := kvCall(t, other, "get", "k", ""); c["found"] != "false" {
		t.Fatalf("get by another tenant = %v, want not found", c)
	}
	if c := kvCall(t, b, "del", "k", ""); c["del"] != "ok" {
		t.Fatalf("del = %v", c)
	}
	if c := kvCall(t, a, "strict", "k", ""); c["found"] != "false" {
		t.Fatalf("get after delete = %v, want not found", c)
	}

	tests := []struct{ name, key, val, want string }{
		{"empty key", "", "v", "rejected"},
		{"key too long", strings.Repeat("k", 129), "v", "rejected"},
		{"value too long", "k", strings.Repeat("v", 4097), "rejected"},
		{"max sizes", strings.Repeat("k", 128), strings.Repeat("v", 4096), "ok"},
	}
	for _, tt := range tests {
		if c := kvCall(t, a, "set", tt.key, tt.val); c["set"] != tt.want {
			t.Errorf("set(%s) = %v, want %s", tt.name, c, tt.want)
		}
	}
	// Quota: 1024 keys per tenant; a new key beyond it is refused, an
	// existing one may still change.
	for i := 1; i < 1024; i++ { // one key of max size is already there
		if c := kvCall(t, a, "set", fmt.Sprintf("q%04d", i), "x"); c["set"] != "ok" {
			t.Fatalf("set #%d = %v", i, c)
		}
	}
	if c := kvCall(t, b, "set", "one-too-many", "x"); c["set"] != "rejected" {
		t.Fatalf("set beyond the quota = %v, want rejected", c)
	}
	if c := kvCall(t, b, "set", "q0001", "y"); c["set"] != "ok" {
		t.Fatalf("overwrite at the quota = %v, want ok", c)
	}
	if c := kvCall(t, other, "set", "k", "v"); c["set"] != "ok" {
		t.Fatalf("another tenant at t1's quota = %v, want ok", c)
	}
}
