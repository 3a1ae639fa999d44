package fuel

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/safeclose/safeclose/hostabi/internal/wasmbin"
)

// Default export names of the two globals.
const (
	DefaultFuelExport  = "__safeclose_fuel"
	DefaultLimitExport = "__safeclose_fuel_limit"
)

// Options configure Instrument.
type Options struct {
	// FuelExport and LimitExport name the exported globals. Zero means
	// DefaultFuelExport and DefaultLimitExport.
	FuelExport, LimitExport string
	// Initial is the fuel an instance starts with: what its start function
	// (a Go reactor's _initialize) may spend before the host first refills
	// it. The limit starts at 0.
	Initial int64
	// CountInstructions makes each check cost the static number of
	// instructions it pays for (see the package documentation). Zero means
	// every check costs 1, so fuel counts loop iterations and calls: a
	// unit whose time has a floor (one check) that a calibration loop can
	// measure, where instruction counts overcharge code like Go's, whose
	// functions sit inside one big loop most of which a call skips.
	CountInstructions bool
}

// Section ids.
const (
	secCustom  = 0
	secImport  = 2
	secGlobal  = 6
	secExport  = 7
	secCode    = 10
	secTag     = 13
	secDataCnt = 12
)

// rank is a section's place in the order the binary format requires.
func rank(id byte) int {
	switch id {
	case secTag:
		return 55 // between memory (5) and global (6)
	case secDataCnt:
		return 95 // between element (9) and code (10)
	}
	return int(id) * 10
}

type section struct {
	id      byte
	payload []byte
}

var magic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// Instrument returns a copy of the module that meters itself (see the
// package documentation). It returns an error for a module it cannot
// decode; it does not otherwise validate the module (the runtime does).
func Instrument(wasm []byte, o Options) ([]byte, error) {
	if o.FuelExport == "" {
		o.FuelExport = DefaultFuelExport
	}
	if o.LimitExport == "" {
		o.LimitExport = DefaultLimitExport
	}
	if o.FuelExport == o.LimitExport {
		return nil, errors.New("fuel: the two exports need different names")
	}
	if !bytes.HasPrefix(wasm, magic) {
		return nil, errors.New("fuel: not a WebAssembly 1.0 binary")
	}
	var secs []section
	r := &wasmbin.Reader{B: wasm, Off: len(magic)}
	last := 0
	for r.Left() > 0 && r.Err == nil {
		id := r.Byte()
		p := r.Bytes(uint64(r.U32()))
		if r.Err != nil {
			break
		}
		if id != secCustom {
			if id > secTag || rank(id) <= last {
				return nil, fmt.Errorf("fuel: section %d out of order or unknown", id)
			}
			last = rank(id)
		}
		secs = append(secs, section{id, p})
	}
	if r.Err != nil {
		return nil, r.Err
	}

	var importedGlobals, definedGlobals uint32
	for _, s := range secs {
		var err error
		switch s.id {
		case secImport:
			importedGlobals, err = countGlobalImports(s.payload)
		case secGlobal:
			sr := &wasmbin.Reader{B: s.payload}
			definedGlobals, err = sr.Vec(), sr.Err
		case secExport:
			err = checkExportNames(s.payload, o.FuelExport, o.LimitExport)
		}
		if err != nil {
			return nil, err
		}
	}
	if uint64(importedGlobals)+uint64(definedGlobals)+2 > 1<<32-1 {
		return nil, errors.New("fuel: too many globals")
	}
	fuel := importedGlobals + definedGlobals
	limit := fuel + 1

	secs = ensure(secs, secGlobal)
	secs = ensure(secs, secExport)
	out := append(make([]byte, 0, len(wasm)+len(wasm)/8), magic...)
	for _, s := range secs {
		p := s.payload
		var err error
		switch s.id {
		case secGlobal:
			p, err = appendVec(p, func(b []byte) []byte {
				b = append(b, valI64, 0x01, opI64Const)
				b = wasmbin.AppendSLEB(b, o.Initial)
				b = append(b, opEnd, valI64, 0x01, opI64Const, 0x00, opEnd)
				return b
			})
		case secExport:
			p, err = appendVec(p, func(b []byte) []byte {
				b = appendName(b, o.FuelExport)
				b = append(b, 0x03)
				b = wasmbin.AppendULEB(b, uint64(fuel))
				b = appendName(b, o.LimitExport)
				b = append(b, 0x03)
				return wasmbin.AppendULEB(b, uint64(limit))
			})
		case secCode:
			p, err = instrumentCode(p, fuel, limit, o.CountInstructions)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s.id)
		out = wasmbin.AppendULEB(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out, nil
}

// ensure inserts an empty section id where the format wants it, if the
// module has none.
func ensure(secs []section, id byte) []section {
	at := len(secs)
	for i, s := range secs {
		if s.id == id {
			return secs
		}
		if s.id != secCustom && rank(s.id) > rank(id) {
			at = i
			break
		}
	}
	return append(secs[:at], append([]section{{id, []byte{0}}}, secs[at:]...)...)
}

// appendVec returns a vector payload with two more elements, appended by
// add after the existing ones.
func appendVec(p []byte, add func([]byte) []byte) ([]byte, error) {
	r := &wasmbin.Reader{B: p}
	n := r.Vec()
	if r.Err != nil {
		return nil, r.Err
	}
	out := wasmbin.AppendULEB(nil, uint64(n)+2)
	out = append(out, p[r.Off:]...)
	return add(out), nil
}

func appendName(b []byte, s string) []byte {
	b = wasmbin.AppendULEB(b, uint64(len(s)))
	return append(b, s...)
}

func countGlobalImports(p []byte) (uint32, error) {
	r := &wasmbin.Reader{B: p}
	var globals uint32
	for n := r.Vec(); n > 0 && r.Err == nil; n-- {
		r.Bytes(uint64(r.U32())) // module
		r.Bytes(uint64(r.U32())) // name
		switch kind := r.Byte(); kind {
		case 0x00: // function: type index
			r.U32()
		case 0x01: // table: reftype, limits
			skipValType(r)
			skipLimits(r)
		case 0x02: // memory: limits
			skipLimits(r)
		case 0x03: // global: valtype, mutability
			skipValType(r)
			r.Byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.Byte()
			r.U32()
		default:
			r.Fail(fmt.Errorf("fuel: import kind %#x", kind))
		}
	}
	if r.Err != nil {
		return 0, fmt.Errorf("fuel: import section: %w", r.Err)
	}
	return globals, nil
}

func skipLimits(r *wasmbin.Reader) {
	flags := r.U32()
	r.ULEB(64)
	if flags&1 != 0 {
		r.ULEB(64)
	}
}

func checkExportNames(p []byte, names ...string) error {
	r := &wasmbin.Reader{B: p}
	for n := r.Vec(); n > 0 && r.Err == nil; n-- {
		name := r.Bytes(uint64(r.U32()))
		for _, want := range names {
			if string(name) == want {
				return fmt.Errorf("fuel: the module already exports %q", want)
			}
		}
		r.Byte()
		r.U32()
	}
	if r.Err != nil {
		return fmt.Errorf("fuel: export section: %w", r.Err)
	}
	return nil
}

func instrumentCode(p []byte, fuel, limit uint32, count bool) ([]byte, error) {
	r := &wasmbin.Reader{B: p}
	n := r.Vec()
	out := wasmbin.AppendULEB(make([]byte, 0, len(p)+len(p)/8), uint64(n))
	var body []byte
	for i := uint32(0); i < n && r.Err == nil; i++ {
		b := r.Bytes(uint64(r.U32()))
		if r.Err != nil {
			break
		}
		var err error
		body, err = instrumentBody(body[:0], b, fuel, limit, count)
		if err != nil {
			return nil, fmt.Errorf("fuel: function %d: %w", i, err)
		}
		out = wasmbin.AppendULEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	if r.Err != nil {
		return nil, fmt.Errorf("fuel: code section: %w", r.Err)
	}
	if r.Left() != 0 {
		return nil, errors.New("fuel: code section: trailing bytes")
	}
	return out, nil
}
