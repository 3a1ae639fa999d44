package wasmbin

import (
	"errors"
	"math"
	"testing"
)

// Every value written by AppendULEB/AppendSLEB reads back as itself, and
// the reader consumes exactly what was written.
func TestLEBRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 1<<32 - 1, math.MaxUint64} {
		r := &Reader{B: AppendULEB(nil, v)}
		if got := r.ULEB(64); got != v || r.Err != nil || r.Left() != 0 {
			t.Errorf("ULEB(%d) = %d, %v, %d left", v, got, r.Err, r.Left())
		}
	}
	for _, v := range []int64{0, 1, -1, 63, -64, 64, -65, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		r := &Reader{B: AppendSLEB(nil, v)}
		if got := r.SLEB(64); got != v || r.Err != nil || r.Left() != 0 {
			t.Errorf("SLEB(%d) = %d, %v, %d left", v, got, r.Err, r.Left())
		}
	}
}

// A value too large for its type, or too long an encoding, is an error that
// sticks; a read past the end is ErrTruncated.
func TestLEBRefusesOverflowAndTruncation(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		read func(*Reader)
		want error
	}{
		{"u32 of 2^32", AppendULEB(nil, 1<<32), func(r *Reader) { r.U32() }, ErrOverflow},
		{"u32 in six bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, func(r *Reader) { r.U32() }, ErrOverflow},
		{"s32 of 2^31", AppendSLEB(nil, 1<<31), func(r *Reader) { r.SLEB(32) }, ErrOverflow},
		{"s32 of -2^31-1", AppendSLEB(nil, -1<<31-1), func(r *Reader) { r.SLEB(32) }, ErrOverflow},
		{"s33 of 2^32", AppendSLEB(nil, 1<<32), func(r *Reader) { r.SLEB(33) }, ErrOverflow},
		{"unterminated", []byte{0x80}, func(r *Reader) { r.U32() }, ErrTruncated},
		{"bytes past the end", []byte{0x01}, func(r *Reader) { r.Bytes(2) }, ErrTruncated},
		{"vector longer than the bytes", []byte{0x05, 0x00}, func(r *Reader) { r.Vec() }, ErrTruncated},
	} {
		r := &Reader{B: tc.b}
		tc.read(r)
		if !errors.Is(r.Err, tc.want) || r.Left() != 0 {
			t.Errorf("%s: Err = %v, %d left; want %v, 0 left", tc.name, r.Err, r.Left(), tc.want)
		}
		if r.Byte() != 0 || !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: the error did not stick", tc.name)
		}
	}
	// In range at the edges.
	r := &Reader{B: AppendSLEB(AppendSLEB(nil, math.MinInt32), 1<<32-1)}
	if a, b := r.SLEB(32), r.SLEB(33); a != math.MinInt32 || b != 1<<32-1 || r.Err != nil {
		t.Errorf("edges: %d, %d, %v", a, b, r.Err)
	}
}
