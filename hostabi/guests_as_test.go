package hostabi_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/safeclose/safeclose/hostabi/internal/datamerge"
	"github.com/safeclose/safeclose/hostabi/internal/fuel"
)

// The load-time rewrites accept AssemblyScript modules: the data-segment
// merge leaves them as they are (binaryen writes a data count section with
// bulk memory on, and only ~100 segments, ~2 KB of wazero slice headers an
// instance) and the fuel rewrite decodes them, adds its two globals, and
// the result compiles. TestFuelRunsEveryGuest
// and the -as cases of TestFailClosed and TestEnforcementModes run them.
func TestASModulesRewrite(t *testing.T) {
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	for _, n := range []string{"allow-as", "loop-as", "oom-as", "jwtauth-as", "apikey-as"} {
		t.Run(n, func(t *testing.T) {
			w := wasm(t, n)
			merged, before, after := datamerge.Merge(w, datamerge.MaxGap)
			if after > before || (after == before && !bytes.Equal(merged, w)) {
				t.Errorf("Merge: %d segments → %d, module changed: %v", before, after, !bytes.Equal(merged, w))
			}
			out, err := fuel.Instrument(merged, fuel.Options{Initial: 1 << 32})
			if err != nil {
				t.Fatalf("Instrument = %v", err)
			}
			cm, err := rt.CompileModule(context.Background(), out)
			if err != nil {
				t.Fatalf("compile the rewritten module: %v", err)
			}
			defer cm.Close(context.Background())
			for _, g := range []string{fuel.DefaultFuelExport, fuel.DefaultLimitExport} {
				if !bytes.Contains(out, []byte(g)) || bytes.Contains(w, []byte(g)) {
					t.Errorf("rewritten module: export %q not added", g)
				}
			}
		})
	}
}
