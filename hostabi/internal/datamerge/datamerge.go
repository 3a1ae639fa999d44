// Package datamerge rewrites a WebAssembly module's data section so that
// active data segments lying close together become one segment, the gaps
// between them filled with zeros.
//
// Why: wazero v1.12 gives every module instance a slice header per data
// segment (ModuleInstance.DataInstances, 24 bytes each, kept for
// memory.init), and Go's linker splits its data at every run of zeros, so a
// Go guest has ~36,000 segments: 0.86 MB of Go heap per warm instance that
// the guest never uses. See RATIONALE.md "Why data segments are merged at
// load".
//
// Invariants:
//   - The instance's initial memory is byte for byte the same: a fresh
//     linear memory is zero, segments are merged only when every data
//     segment is active on memory 0 at an i32.const offset, no two
//     overlap (so their order does not matter), and writing the zeros
//     between two of them changes nothing.
//   - A module with a data count section (the only way code can name a
//     segment: memory.init, data.drop), a passive segment, or anything else
//     Merge does not recognise is returned unchanged, never rewritten
//     wrongly. Merge never panics.
//
// The package imports the standard library only.
package datamerge

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
)

// Section ids.
const (
	secCustom  = 0
	secData    = 11
	secDataCnt = 12
)

const (
	opI32Const = 0x41
	opEnd      = 0x0b
)

var magic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// MaxGap is the gap Load merges across: one page of the host's, so a merge
// never fills with zeros a whole page a lazily mapped memory would have left
// untouched. A Go guest's data becomes one segment (its gaps are at most a
// few hundred bytes).
const MaxGap = 4096

// segment is an active data segment of memory 0.
type segment struct {
	off  uint32
	init []byte
}

// Merge returns the module with every run of data segments whose gaps are
// at most maxGap bytes merged into one segment, and the number of segments
// before and after. When it changes nothing (no data section, a module it
// does not recognise, nothing to merge) it returns wasm itself.
func Merge(wasm []byte, maxGap int) (out []byte, before, after int) {
	if !bytes.HasPrefix(wasm, magic) {
		return wasm, 0, 0
	}
	r := &wasmbin.Reader{B: wasm, Off: len(magic)}
	dataAt, dataEnd := -1, -1
	var payload []byte
	for r.Left() > 0 && r.Err == nil {
		start := r.Off
		id := r.Byte()
		p := r.Bytes(uint64(r.U32()))
		switch id {
		case secDataCnt:
			return wasm, 0, 0
		case secData:
			if dataAt >= 0 {
				return wasm, 0, 0
			}
			dataAt, dataEnd, payload = start, r.Off, p
		}
	}
	if r.Err != nil || dataAt < 0 {
		return wasm, 0, 0
	}
	segs, ok := decode(payload)
	if !ok || len(segs) < 2 {
		return wasm, len(segs), len(segs)
	}
	merged := merge(segs, maxGap)
	if len(merged) == len(segs) {
		return wasm, len(segs), len(segs)
	}
	var p []byte
	p = wasmbin.AppendULEB(p, uint64(len(merged)))
	for _, s := range merged {
		p = append(p, 0x00, opI32Const)
		p = wasmbin.AppendSLEB(p, int64(int32(s.off)))
		p = append(p, opEnd)
		p = wasmbin.AppendULEB(p, uint64(len(s.init)))
		p = append(p, s.init...)
	}
	out = make([]byte, 0, len(wasm)-(dataEnd-dataAt)+len(p)+6)
	out = append(out, wasm[:dataAt]...)
	out = append(out, secData)
	out = wasmbin.AppendULEB(out, uint64(len(p)))
	out = append(out, p...)
	out = append(out, wasm[dataEnd:]...)
	return out, len(segs), len(merged)
}

// decode reads a data section's segments; ok is false unless every one is
// active on memory 0 at an i32.const offset and no two overlap; they
// come back in address order.
func decode(p []byte) (segs []segment, ok bool) {
	r := &wasmbin.Reader{B: p}
	n := r.Vec()
	if r.Err != nil {
		return nil, false
	}
	segs = make([]segment, 0, n)
	for range n {
		if r.U32() != 0 || r.Byte() != opI32Const {
			return nil, false
		}
		off := uint32(int32(r.SLEB(32)))
		if r.Byte() != opEnd {
			return nil, false
		}
		init := r.Bytes(uint64(r.U32()))
		if r.Err != nil {
			return nil, false
		}
		segs = append(segs, segment{off, init})
	}
	if r.Err != nil || r.Left() != 0 {
		return nil, false
	}
	// Go's linker does not emit its segments in address order. Disjoint
	// segments can be written in any order.
	slices.SortStableFunc(segs, func(a, b segment) int { return cmp.Compare(a.off, b.off) })
	var end uint64
	for _, s := range segs {
		if uint64(s.off) < end {
			return nil, false
		}
		end = uint64(s.off) + uint64(len(s.init))
	}
	return segs, true
}

// merge joins neighbours at most maxGap bytes apart.
func merge(segs []segment, maxGap int) []segment {
	var out []segment
	for i := 0; i < len(segs); {
		j, end := i+1, uint64(segs[i].off)+uint64(len(segs[i].init))
		for j < len(segs) && uint64(segs[j].off)-end <= uint64(maxGap) {
			end = uint64(segs[j].off) + uint64(len(segs[j].init))
			j++
		}
		if j == i+1 {
			out = append(out, segs[i])
			i = j
			continue
		}
		init := make([]byte, end-uint64(segs[i].off))
		for _, s := range segs[i:j] {
			copy(init[s.off-segs[i].off:], s.init)
		}
		out = append(out, segment{segs[i].off, init})
		i = j
	}
	return out
}
