package fuel

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/safeclose/safeclose/hostabi/internal/wasmcheck"
)

// FuzzInstrument: any input never panics, and a module wazero accepts stays
// a module wazero accepts once instrumented.
func FuzzInstrument(f *testing.F) {
	f.Add(testModule())
	f.Add(mod())
	f.Add(mod(sec(1, vec([]byte{0x60, 0, 0})), sec(3, vec([]byte{0})), sec(10, vec(body(vec(), 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b)))))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x0a\x04\x01\x02\x00\x0b"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCoreFeatures(api.CoreFeaturesV2))
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Instrument(in, Options{Initial: 1000})
		if len(in) > 1<<16 {
			return // keep compiling cheap
		}
		if wasmcheck.Check(in) != nil {
			// Issue 10.9: wazero would allocate by the module's absurd
			// declared counts (gigabytes, or a fatal out-of-memory); hostabi
			// refuses such a module before wazero sees it.
			return
		}
		cm, cerr := rt.CompileModule(ctx, in)
		if cerr != nil {
			return
		}
		cm.Close(ctx)
		if err != nil {
			// Imports of globals from elsewhere and features the
			// rewriter refuses are the only acceptable failures for
			// a valid module; wazero's V2 features are all known.
			t.Fatalf("Instrument(valid module) = %v", err)
		}
		cm2, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("instrumented module does not compile: %v", err)
		}
		cm2.Close(ctx)
	})
}
