package fuel

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// mod assembles a module from (id, payload) pairs.
func mod(secs ...[]byte) []byte {
	out := append([]byte(nil), magic...)
	for _, s := range secs {
		out = append(out, s[0])
		out = wasmbin.AppendULEB(out, uint64(len(s)-1))
		out = append(out, s[1:]...)
	}
	return out
}

func sec(id byte, parts ...[]byte) []byte {
	b := []byte{id}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func vec(items ...[]byte) []byte {
	b := wasmbin.AppendULEB(nil, uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func name(s string) []byte { return appendName(nil, s) }

func body(locals []byte, code ...byte) []byte {
	b := append(append([]byte(nil), locals...), code...)
	return append(wasmbin.AppendULEB(nil, uint64(len(b))), b...)
}

// testModule exports count(n) (a counting loop), fib(n) (recursion without
// a loop), sum3() (a loop that takes and returns a value, multi-value) and
// imports a global, so the new globals' indices are shifted past it.
func testModule() []byte {
	const i64 = 0x7e
	types := sec(1, vec(
		[]byte{0x60, 0, 1, i64},           // 0: () -> i64
		[]byte{0x60, 1, i64, 1, i64},      // 1: (i64) -> i64
		[]byte{0x60, 1, i64, 2, i64, i64}, // 2: (i64) -> (i64, i64)
	))
	imports := sec(2, vec(append(append(name("env"), name("g")...), 0x03, 0x7f, 0x00)))
	funcs := sec(3, vec([]byte{1}, []byte{1}, []byte{0}))
	globals := sec(6, vec([]byte{0x7f, 0x01, 0x41, 0x07, 0x0b})) // one mutable i32 = 7
	exports := sec(7, vec(
		append(name("count"), 0x00, 0x00),
		append(name("fib"), 0x00, 0x01),
		append(name("sum3"), 0x00, 0x02),
	))
	count := body(vec([]byte{1, i64}),
		0x02, 0x40, // block
		0x03, 0x40, // loop
		0x20, 0x00, 0x50, 0x0d, 0x01, // local.get 0; i64.eqz; br_if 1
		0x20, 0x00, 0x42, 0x01, 0x7d, 0x21, 0x00, // n--
		0x20, 0x01, 0x42, 0x01, 0x7c, 0x21, 0x01, // acc++
		0x0c, 0x00, // br 0
		0x0b, 0x0b,
		0x20, 0x01, 0x0b)
	fib := body(vec(),
		0x20, 0x00, 0x42, 0x02, 0x53, // n < 2
		0x04, i64, 0x20, 0x00, // if (result i64) n
		0x05, // else fib(n-1)+fib(n-2)
		0x20, 0x00, 0x42, 0x01, 0x7d, 0x10, 0x01,
		0x20, 0x00, 0x42, 0x02, 0x7d, 0x10, 0x01,
		0x7c, 0x0b, 0x0b)
	// sum3: i64.const 0; loop (type 2: i64 -> i64 i64) adds 3 once, via
	// the global, then adds the two results.
	sum3 := body(vec(),
		0x42, 0x00,
		0x03, 0x02, // loop (type 2)
		0x42, 0x03, 0x7c, 0x23, 0x01, 0xac, // + 3; global.get 1 (i32) ; i64.extend_i32_s
		0x0b,
		0x7c, 0x0b) // sum + the global
	code := sec(10, vec(count, fib, sum3))
	custom := sec(0, name("note"), []byte("kept"))
	return mod(types, imports, funcs, globals, exports, custom, code)
}

func instantiate(t *testing.T, wasm []byte) (api.Module, api.MutableGlobal, api.MutableGlobal) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	// wazero host modules cannot export globals; a tiny module does.
	g := mod(sec(6, vec([]byte{0x7f, 0x00, 0x41, 0x00, 0x0b})), sec(7, vec(append(name("g"), 0x03, 0x00))))
	if _, err := rt.InstantiateWithConfig(ctx, g, wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	m, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := m.ExportedGlobal(DefaultFuelExport).(api.MutableGlobal)
	l, _ := m.ExportedGlobal(DefaultLimitExport).(api.MutableGlobal)
	return m, f, l
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	out, err := Instrument(testModule(), Options{Initial: 1 << 40, CountInstructions: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "note") {
		t.Error("custom section dropped")
	}
	m, f, l := instantiate(t, out)
	if f == nil || l == nil {
		t.Fatal("fuel or limit global not exported as mutable")
	}
	if got := int64(f.Get()); got != 1<<40 {
		t.Errorf("initial fuel = %d, want %d", got, int64(1<<40))
	}
	ctx := context.Background()
	for _, tt := range []struct {
		fn   string
		in   []uint64
		want uint64
	}{
		{"count", []uint64{1000}, 1000},
		{"fib", []uint64{15}, 610},
		{"sum3", nil, 3 + 7},
	} {
		res, err := m.ExportedFunction(tt.fn).Call(ctx, tt.in...)
		if err != nil || res[0] != tt.want {
			t.Errorf("%s(%v) = %v, %v; want %d", tt.fn, tt.in, res, err, tt.want)
		}
	}
	// count(1000) pays for 1001 loop headers of 13 instructions each (the
	// last exits through br_if) plus the entry.
	f.Set(1 << 40)
	if _, err := m.ExportedFunction("count").Call(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if spent := 1<<40 - int64(f.Get()); spent < 1000*13 || spent > 1001*13+10 {
		t.Errorf("count(1000) spent %d fuel, want about %d", spent, 1001*13)
	}
}

// By default each check costs 1: count(1000) passes 1001 loop headers (it
// calls nothing, so its entry is not checked) and fib(n) one entry per call.
func TestInstrumentCountsChecks(t *testing.T) {
	out, err := Instrument(testModule(), Options{Initial: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	m, f, _ := instantiate(t, out)
	ctx := context.Background()
	for _, tt := range []struct {
		fn          string
		arg, result uint64
		spent       int64
	}{
		{"count", 1000, 1000, 1001},
		{"fib", 10, 55, 177}, // calls(n) = 2·fib(n+1) − 1
	} {
		f.Set(1 << 40)
		res, err := m.ExportedFunction(tt.fn).Call(ctx, tt.arg)
		if err != nil || res[0] != tt.result {
			t.Fatalf("%s(%d) = %v, %v; want %d", tt.fn, tt.arg, res, err, tt.result)
		}
		if spent := 1<<40 - int64(f.Get()); spent != tt.spent {
			t.Errorf("%s(%d) spent %d fuel, want %d", tt.fn, tt.arg, spent, tt.spent)
		}
	}
}

func TestInstrumentStops(t *testing.T) {
	out, err := Instrument(testModule(), Options{Initial: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		fn   string
		arg  uint64
		set  func(f, l api.MutableGlobal)
	}{
		{"loop runs out of fuel", "count", 1 << 40, func(f, l api.MutableGlobal) { f.Set(10_000) }},
		{"recursion runs out of fuel", "fib", 40, func(f, l api.MutableGlobal) { f.Set(10_000) }},
		{"limit raised", "count", 10, func(f, l api.MutableGlobal) { l.Set(math.MaxInt64) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f, l := instantiate(t, out)
			tt.set(f, l)
			_, err := m.ExportedFunction(tt.fn).Call(ctx, tt.arg)
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("%s = %v, want an unreachable trap", tt.fn, err)
			}
		})
	}
}

func TestInstrumentRefuses(t *testing.T) {
	good := testModule()
	clash := mod(sec(7, vec(append(name(DefaultFuelExport), 0x00, 0x00))))
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not wasm", []byte("\x00asm garbage")},
		{"truncated", good[:len(good)-3]},
		{"export clash", clash},
		{"unknown opcode", mod(sec(1, vec([]byte{0x60, 0, 0})), sec(3, vec([]byte{0})), sec(10, vec(body(vec(), 0x27, 0x0b))))},
		{"missing end", mod(sec(1, vec([]byte{0x60, 0, 0})), sec(3, vec([]byte{0})), sec(10, vec(body(vec(), 0x01))))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Instrument(tt.in, Options{}); err == nil {
				t.Errorf("Instrument(%s) succeeded, want an error", tt.name)
			}
		})
	}
	if _, err := Instrument(mod(), Options{}); err != nil {
		t.Errorf("Instrument(empty module) = %v", err)
	}
}

// goGuests are real Go wasip1 c-shared modules built from the repository.
var goGuests = map[string]string{
	"allow":   "../../testdata/guests/allow",
	"jwtauth": "../../../plugins/examples/jwtauth",
}

func buildGuest(t testing.TB, name string) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Go guests")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, goGuests[name])
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Go guests stay valid modules after the rewrite (hostabi's tests run
// them instrumented).
func TestInstrumentGoGuests(t *testing.T) {
	for n := range goGuests {
		t.Run(n, func(t *testing.T) {
			in := buildGuest(t, n)
			out, err := Instrument(in, Options{Initial: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			cm, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("compile instrumented %s: %v", n, err)
			}
			if _, ok := cm.ExportedFunctions()["auth_handle"]; !ok {
				t.Error("auth_handle lost")
			}
			t.Logf("%s: %d → %d bytes (+%.1f%%)", n, len(in), len(out), 100*float64(len(out)-len(in))/float64(len(in)))
		})
	}
}
