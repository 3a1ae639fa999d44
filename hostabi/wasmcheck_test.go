package hostabi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
)

// Issue 10.9: FuzzInstrument found modules of a few bytes whose declared
// counts make wazero v1.12 allocate without bound; the process ended with
// "fatal error: runtime: out of memory" (a reload with such a plugin file
// would have stopped the server). Load, under either enforcement, and
// InspectWasm (`safeclose plugin check`) now refuse them before wazero sees
// them. On the old code this test does not fail: the test binary dies.
func TestLoadRefusesAbsurdDeclaredCounts(t *testing.T) {
	t.Parallel()
	const hdr = "\x00asm\x01\x00\x00\x00"
	mods := map[string]string{
		"code count":   hdr + "\x0a\x05\xff\xff\xff\xff\x0f",
		"type params":  hdr + "\x01\x07\x01\x60\xff\xff\xff\xff\x0f",
		"locals":       hdr + "\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x0a\x01\x08\x01\xf0\xff\xff\xff\x0f\x7f\x0b",
		"name section": hdr + "\x00\x0b\x04name\x01\x05\xff\xff\xff\xff\x0f",
	}
	for _, enf := range []hostabi.Enforcement{hostabi.EnforceFuel, hostabi.EnforceContext} {
		e := newEngineWith(t, enf)
		for name, m := range mods {
			p, err := e.Load(context.Background(), hostabi.PluginOptions{Tenant: "t", Name: name, Wasm: []byte(m), PoolSize: 1})
			if err == nil {
				p.Close(context.Background())
			}
			if !errors.Is(err, hostabi.ErrRefused) {
				t.Errorf("Load(%s) = %v, want ErrRefused", name, err)
			}
		}
	}
	for name, m := range mods {
		if _, _, err := hostabi.InspectWasm(context.Background(), []byte(m)); !errors.Is(err, hostabi.ErrRefused) {
			t.Errorf("InspectWasm(%s) = %v, want ErrRefused", name, err)
		}
	}
}
