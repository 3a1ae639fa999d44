// Package wasmbin reads and writes the WebAssembly binary format's
// primitives (bytes, LEB128 integers, vectors): the one decoder the module
// rewriters (hostabi/internal/fuel, hostabi/internal/datamerge) share.
package wasmbin

import "errors"

var (
	// ErrTruncated is a read past the end of the bytes.
	ErrTruncated = errors.New("wasm: truncated module")
	// ErrOverflow is a LEB128 integer longer or larger than its type.
	ErrOverflow = errors.New("wasm: LEB128 overflow")
)

// Reader decodes B from Off. The first error sticks in Err: later reads
// return zero values and do not advance, so callers check Err once per loop.
type Reader struct {
	B   []byte
	Off int
	Err error
}

// Fail records err (the first one sticks) and ends the reading.
func (r *Reader) Fail(err error) {
	if r.Err == nil {
		r.Err = err
	}
	r.Off = len(r.B)
}

// Left is the number of bytes not read yet.
func (r *Reader) Left() int { return len(r.B) - r.Off }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.Off >= len(r.B) {
		r.Fail(ErrTruncated)
		return 0
	}
	c := r.B[r.Off]
	r.Off++
	return c
}

// Bytes reads n bytes (a sub-slice of B, not a copy).
func (r *Reader) Bytes(n uint64) []byte {
	if r.Err != nil || n > uint64(r.Left()) {
		r.Fail(ErrTruncated)
		return nil
	}
	s := r.B[r.Off : r.Off+int(n)]
	r.Off += int(n)
	return s
}

// ULEB reads an unsigned LEB128 of at most bits bits.
func (r *Reader) ULEB(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.Byte()
		if r.Err != nil {
			return 0
		}
		if shift >= bits || (shift+7 > bits && c&0x7f>>(bits-shift) != 0) {
			r.Fail(ErrOverflow)
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

// SLEB reads a signed LEB128 of at most bits bits.
func (r *Reader) SLEB(bits uint) int64 {
	var v int64
	for shift := uint(0); ; shift += 7 {
		c := r.Byte()
		if r.Err != nil {
			return 0
		}
		if shift >= bits {
			r.Fail(ErrOverflow)
			return 0
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			if bits < 64 && (v < -1<<(bits-1) || v > 1<<(bits-1)-1) {
				r.Fail(ErrOverflow)
				return 0
			}
			return v
		}
	}
}

// U32 reads an unsigned 32-bit LEB128.
func (r *Reader) U32() uint32 { return uint32(r.ULEB(32)) }

// Vec reads a vector length, refusing one longer than the bytes left (every
// element takes at least one byte).
func (r *Reader) Vec() uint32 {
	n := r.U32()
	if uint64(n) > uint64(r.Left()) {
		r.Fail(ErrTruncated)
		return 0
	}
	return n
}

// AppendULEB appends v as an unsigned LEB128.
func AppendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// AppendSLEB appends v as a signed LEB128.
func AppendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
