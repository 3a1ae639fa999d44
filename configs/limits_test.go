package configs

import (
	"fmt"
	"strings"
	"testing"
)

// Issue 9.13: memory_pages and pool_size are bounded, for auth and webhook
// plugins alike.
func TestValidatePluginLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pages     int64
		pool      int
		wantPages bool
		wantPool  bool
	}{
		{name: "defaults"},
		{name: "maxima", pages: MaxMemoryPages, pool: MaxPoolSize},
		{name: "memory over max", pages: MaxMemoryPages + 1, wantPages: true},
		{name: "memory at wasm max", pages: 65536, wantPages: true},
		{name: "pool over max", pool: MaxPoolSize + 1, wantPool: true},
		{name: "negative pool", pool: -1, wantPool: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := fmt.Sprintf("{path: a.wasm, memory_pages: %d, pool_size: %d}", tt.pages, tt.pool)
			y := "tenants:\n  - name: a\n    hosts: [a.example]\n    plaid: {env: emulator}\n" +
				"    auth: {plugin: " + pl + "}\n    webhook_plugins: [" + pl + "]\n"
			f, err := Decode(strings.NewReader(y))
			if err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprint(f.Validate())
			for _, field := range []string{"tenants[0].auth.plugin", "tenants[0].webhook_plugins[0]"} {
				if got := strings.Contains(msg, field+".memory_pages"); got != tt.wantPages {
					t.Errorf("Validate() reports %s.memory_pages = %v, want %v:\n%s", field, got, tt.wantPages, msg)
				}
				if got := strings.Contains(msg, field+".pool_size"); got != tt.wantPool {
					t.Errorf("Validate() reports %s.pool_size = %v, want %v:\n%s", field, got, tt.wantPool, msg)
				}
			}
		})
	}
}
