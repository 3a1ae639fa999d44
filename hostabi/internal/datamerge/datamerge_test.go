package datamerge

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
)

func mod(secs ...[]byte) []byte {
	b := append([]byte(nil), magic...)
	for _, s := range secs {
		b = append(b, s...)
	}
	return b
}

func sec(id byte, payload []byte) []byte {
	return append(wasmbin.AppendULEB([]byte{id}, uint64(len(payload))), payload...)
}

func vec(items ...[]byte) []byte {
	b := wasmbin.AppendULEB(nil, uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// active is an active segment of memory 0 at offset off.
func active(off int32, init string) []byte {
	b := wasmbin.AppendSLEB([]byte{0x00, opI32Const}, int64(off))
	b = append(b, opEnd)
	return append(wasmbin.AppendULEB(b, uint64(len(init))), init...)
}

var (
	memory = sec(5, vec([]byte{0x00, 0x01}))                     // one memory, 1 page
	export = sec(7, vec(append([]byte{6}, "memory\x02\x00"...))) // export it as "memory"
)

// memoryOf instantiates the module and returns its initial memory.
func memoryOf(t *testing.T, wasm []byte) []byte {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	m, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Memory().Read(0, m.Memory().Size())
	return bytes.Clone(b)
}

// Segments out of order, with small and large gaps, give the same memory
// as one segment per run of neighbours within the gap.
func TestMergeKeepsMemory(t *testing.T) {
	in := mod(memory, export, sec(11, vec(
		active(300, "cc"), active(100, "aaaa"), active(110, "b"), active(20000, "far"), active(104, "z"),
	)))
	out, before, after := Merge(in, 64)
	if before != 5 || after != 3 {
		t.Errorf("Merge(gap 64) segments %d → %d, want 5 → 3", before, after)
	}
	want, got := memoryOf(t, in), memoryOf(t, out)
	if !bytes.Equal(got, want) {
		t.Error("merged module's memory differs from the original's")
	}
	if _, b, a := Merge(in, 1<<20); b != 5 || a != 1 {
		t.Errorf("Merge(gap 1 MiB) segments %d → %d, want 5 → 1", b, a)
	}
}

// What Merge does not recognise, or must not touch, comes back unchanged.
func TestMergeLeavesAlone(t *testing.T) {
	two := func(a, b []byte) []byte { return sec(11, vec(a, b)) }
	passive := append([]byte{0x01}, wasmbin.AppendULEB(nil, 1)...)
	passive = append(passive, 'p')
	global := []byte{0x00, 0x23, 0x00, opEnd, 0x01, 'g'} // offset global.get 0
	tests := []struct {
		name string
		wasm []byte
	}{
		{"data count section", mod(memory, export, sec(12, []byte{2}), two(active(0, "a"), active(2, "b")))},
		{"passive segment", mod(memory, export, two(active(0, "a"), passive))},
		{"offset not a constant", mod(memory, export, two(active(0, "a"), global))},
		{"overlapping segments", mod(memory, export, two(active(0, "abc"), active(2, "x")))},
		{"one segment", mod(memory, export, sec(11, vec(active(0, "a"))))},
		{"gap too wide", mod(memory, export, two(active(0, "a"), active(100, "b")))},
		{"truncated", mod(memory, export, two(active(0, "a"), active(2, "b")))[:30]},
		{"not wasm", []byte("hello")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if out, _, _ := Merge(tt.wasm, 8); !bytes.Equal(out, tt.wasm) {
				t.Errorf("Merge changed the module")
			}
		})
	}
}

// FuzzMerge: Merge never panics, and a module it changes keeps every
// section but the data section byte for byte.
func FuzzMerge(f *testing.F) {
	f.Add(mod(memory, export, sec(11, vec(active(8, "a"), active(0, "bc"), active(3, "d")))), 4)
	f.Add(mod(memory, sec(11, vec(active(-1, "a"), active(2, "b")))), 0)
	f.Fuzz(func(t *testing.T, wasm []byte, gap int) {
		if gap < 0 {
			gap = -gap
		}
		out, before, after := Merge(wasm, gap)
		if after > before {
			t.Errorf("Merge made %d segments out of %d", after, before)
		}
		if after < before && !bytes.HasPrefix(out, magic) {
			t.Error("Merge output is not a module")
		}
	})
}
