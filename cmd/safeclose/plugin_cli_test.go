package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/internal/testguest"
)

// Issue 9.17: `plugin run -memory-pages 99999999` panicked inside wazero;
// it must be a clear error (non-zero exit), before anything is loaded.
func TestPluginMemoryPagesOutOfRange(t *testing.T) {
	t.Parallel()
	wasm := filepath.Join(t.TempDir(), "empty.wasm")
	if err := os.WriteFile(wasm, []byte("\x00asm\x01\x00\x00\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "check"} {
		for _, pages := range []string{"99999999", "4294967297", "65537", "1025", "0"} {
			var out bytes.Buffer
			err := run(context.Background(), []string{"plugin", sub, wasm, "-memory-pages", pages}, &out, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "-memory-pages") {
				t.Errorf("plugin %s -memory-pages %s = %v, want an error naming -memory-pages", sub, pages, err)
			}
		}
	}
}

// Issue 9.17: a malformed -request ran the plugin on "GET /" and exited 0.
func TestPluginRunRefusesMalformedRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Wasm plugin")
	}
	t.Parallel()
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/pathrule")
	cache := testguest.CompilationCacheDir(t) // compiled once for every run below
	conf := filepath.Join(dir, "conf.json")
	os.WriteFile(conf, []byte(`{"allow_cidrs":["10.0.0.0/8"],"allow_paths":["/"]}`), 0o600)
	tests := []struct {
		request string
		wantErr bool
	}{
		{"GET /ok", false},
		{"POST /a?b=c", false},
		{"GET", true},
		{"", true},
		{"GET /a extra", true},
		{"G@T /a", true},
		{"GET a", true},
		{"GET  /a", true},
		{"GET /a\tb", true},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), []string{"plugin", "run", wasm, "-cap", "config", "-config", conf, "-cache", cache,
			"-request", tt.request, "-source", "10.0.0.1:1"}, &out, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Errorf("plugin run -request %q = %v (out %q), want error: %v", tt.request, err, out.String(), tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "-request") {
			t.Errorf("plugin run -request %q = %v, want an error naming -request", tt.request, err)
		}
	}
}
