// Package wasmcheck refuses, before wazero decodes a module, the declared
// sizes that wazero v1.12's decoder allocates by without checking them
// against the bytes that follow: a 15-byte module declaring 2³²−1 functions
// in its code section (or 2³²−1 locals, or parameters, or names) makes it
// allocate gigabytes, or end the process with "fatal error: runtime: out of
// memory", which no recover catches. Found by FuzzInstrument; see
// RATIONALE.md "What fuzzing found".
//
// Check walks the sections and bounds every count and length wazero
// allocates by (vector counts, names, function types, locals, data and
// element segments, the name section) by the bytes left, where each element
// takes at least one byte. It validates nothing else: where it cannot read
// further it stops and leaves the module to wazero, which reports the
// problem. It imports only the standard library.
package wasmcheck

import (
	"bytes"
	"errors"
	"fmt"
)

// MaxLocals is the most locals one function may declare (V8's limit; a Go
// guest's largest function declares a few hundred).
const MaxLocals = 50000

// ErrBounds is a declared count or length the module's bytes cannot hold.
var ErrBounds = errors.New("wasmcheck: declared size out of bounds")

var magic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// Section ids.
const (
	secCustom  = 0
	secType    = 1
	secImport  = 2
	secExport  = 7
	secStart   = 8 // a function index, not a vector
	secElement = 9
	secCode    = 10
	secData    = 11
	secDataCnt = 12 // a count, not a vector
	secTag     = 13 // the last id
)

// Check returns an error wrapping ErrBounds for a module whose declared
// sizes cannot fit in its bytes, and nil otherwise (including for input that
// is not a module: wazero refuses that itself).
func Check(wasm []byte) error {
	if !bytes.HasPrefix(wasm, magic) {
		return nil
	}
	r := &reader{b: wasm, off: len(magic)}
	for r.left() > 0 && r.err == nil {
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return nil // framing wazero reports
		}
		if int64(size) > int64(r.left()) {
			return fmt.Errorf("%w: section %d of %d bytes runs past the end", ErrBounds, id, size)
		}
		p := &reader{b: r.b[r.off : r.off+int(size)]}
		r.off += int(size)
		if err := section(id, p, len(wasm)); err != nil {
			return fmt.Errorf("section %d: %w", id, err)
		}
	}
	return nil
}

// section checks one section's payload; a read past its end stops the walk
// (p.err), which is wazero's to report.
func section(id byte, p *reader, total int) error {
	switch {
	case id == secCustom:
		return custom(p)
	case id == secStart || id > secTag:
		return nil
	case id == secDataCnt:
		if n := p.u32(); p.err == nil && int64(n) > int64(total) {
			return fmt.Errorf("%w: data count %d in a %d-byte module", ErrBounds, n, total)
		}
		return nil
	}
	n, err := p.count()
	if err != nil || p.err != nil {
		return err
	}
	for i := uint32(0); i < n && p.err == nil; i++ {
		var err error
		switch id {
		case secType:
			err = funcType(p)
		case secImport:
			err = importEntry(p)
		case secExport:
			if err = p.name(); err == nil {
				p.byte()
				p.u32()
			}
		case secElement:
			err = element(p)
		case secCode:
			err = code(p)
		case secData:
			err = data(p)
		default:
			return nil // tables, memories, globals, functions, tags: the count was all
		}
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

func funcType(p *reader) error {
	if p.byte() != 0x60 {
		p.err = errStop
		return nil
	}
	for range 2 { // parameters, results
		n, err := p.count()
		if err != nil {
			return err
		}
		for range n {
			p.valType()
		}
	}
	return nil
}

func importEntry(p *reader) error {
	if err := p.name(); err != nil {
		return err
	}
	if err := p.name(); err != nil {
		return err
	}
	switch p.byte() {
	case 0x00: // function
		p.u32()
	case 0x01: // table
		p.valType()
		p.limits()
	case 0x02: // memory
		p.limits()
	case 0x03: // global
		p.valType()
		p.byte()
	case 0x04: // tag
		p.byte()
		p.u32()
	default:
		p.err = errStop
	}
	return nil
}

func code(p *reader) error {
	size := p.u32()
	if p.err != nil {
		return nil
	}
	if int64(size) > int64(p.left()) {
		return fmt.Errorf("%w: body of %d bytes runs past the section", ErrBounds, size)
	}
	body := &reader{b: p.b[p.off : p.off+int(size)]}
	p.off += int(size)
	groups, err := body.count()
	if err != nil {
		return err
	}
	var sum uint64
	for range groups {
		sum += uint64(body.u32())
		body.valType()
		if body.err != nil {
			return nil
		}
		if sum > MaxLocals {
			return fmt.Errorf("%w: more than %d locals", ErrBounds, MaxLocals)
		}
	}
	return nil
}

func data(p *reader) error {
	switch p.u32() {
	case 0:
		p.expr()
	case 1:
	case 2:
		p.u32()
		p.expr()
	default:
		p.err = errStop
	}
	return p.bytesVec()
}

func element(p *reader) error {
	flags := p.u32()
	if flags > 7 {
		p.err = errStop
		return nil
	}
	if flags&1 == 0 { // active
		if flags&2 != 0 {
			p.u32() // table index
		}
		p.expr()
	}
	if flags&3 != 0 { // an elemkind or reftype
		p.valType()
	}
	n, err := p.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n && p.err == nil; i++ {
		if flags&4 == 0 {
			p.u32() // function index
		} else {
			p.expr()
		}
	}
	return nil
}

// custom bounds the name of a custom section and, in the "name" section,
// the counts and names of function and local names.
func custom(p *reader) error {
	start := p.off
	if err := p.name(); err != nil || p.err != nil {
		return err
	}
	if p.off-start != 5 || string(p.b[start+1:p.off]) != "name" {
		return nil
	}
	for p.left() > 0 && p.err == nil {
		sub := p.byte()
		size := p.u32()
		if p.err != nil {
			return nil
		}
		if int64(size) > int64(p.left()) {
			return fmt.Errorf("%w: name subsection of %d bytes runs past the section", ErrBounds, size)
		}
		s := &reader{b: p.b[p.off : p.off+int(size)]}
		p.off += int(size)
		if err := nameSubsection(sub, s); err != nil {
			return err
		}
	}
	return nil
}

func nameSubsection(id byte, s *reader) error {
	switch id {
	case 0: // module name
		return s.name()
	case 1: // function names: vec(index, name)
		return s.nameMap()
	case 2: // local names: vec(index, vec(index, name))
		n, err := s.count()
		if err != nil {
			return err
		}
		for i := uint32(0); i < n && s.err == nil; i++ {
			s.u32()
			if err := s.nameMap(); err != nil {
				return err
			}
		}
	}
	return nil
}

// errStop ends a walk where the layout is not one this package reads.
var errStop = errors.New("wasmcheck: stop")

type reader struct {
	b   []byte
	off int
	err error // a read past the end, or errStop; later reads return zero
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.err = errStop
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

// u32 reads an unsigned LEB128 of at most 5 bytes that fits in 32 bits.
func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35 && r.err == nil; shift += 7 {
		c := r.byte()
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 1<<32-1 {
				r.err = errStop
			}
			return uint32(v)
		}
	}
	r.err = errStop
	return 0
}

// skipLEB skips a LEB128 of at most 10 bytes.
func (r *reader) skipLEB() {
	for range 10 {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.err = errStop
}

// count reads a vector's element count and refuses one the bytes left
// cannot hold.
func (r *reader) count() (uint32, error) {
	n := r.u32()
	if r.err == nil && int64(n) > int64(r.left()) {
		return 0, fmt.Errorf("%w: %d entries declared in %d bytes", ErrBounds, n, r.left())
	}
	return n, nil
}

// name skips a length-prefixed name, refusing a length past the end.
func (r *reader) name() error {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if int64(n) > int64(r.left()) {
		return fmt.Errorf("%w: name of %d bytes in %d", ErrBounds, n, r.left())
	}
	r.off += int(n)
	return nil
}

// bytesVec is name's check for a byte vector (a data segment's bytes).
func (r *reader) bytesVec() error { return r.name() }

func (r *reader) nameMap() error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.u32()
		if err := r.name(); err != nil {
			return err
		}
	}
	return nil
}

// valType skips a value type: one byte, or a (ref null? ht) prefix and its
// heap type.
func (r *reader) valType() {
	if t := r.byte(); t == 0x63 || t == 0x64 {
		r.skipLEB()
	}
}

func (r *reader) limits() {
	flags := r.u32()
	r.skipLEB()
	if flags&1 != 0 {
		r.skipLEB()
	}
}

// expr skips a constant expression up to its end opcode; an opcode it does
// not know stops the walk.
func (r *reader) expr() {
	for range 64 {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41, 0x42, 0x23, 0xd2: // i32.const, i64.const, global.get, ref.func
			r.skipLEB()
		case 0x43: // f32.const
			r.off += 4
		case 0x44: // f64.const
			r.off += 8
		case 0xd0: // ref.null ht
			r.skipLEB()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		default:
			r.err = errStop
			return
		}
		if r.off > len(r.b) {
			r.err = errStop
			return
		}
	}
	r.err = errStop
}
