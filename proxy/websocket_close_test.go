package proxy

import (
	"encoding/binary"
	"testing"
)

// wsFrame builds a frame header and payload of n bytes, masked or not.
func wsFrame(n int, masked bool) []byte {
	b := []byte{0x82}
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, make([]byte, n)...)
}

// Issue 13.1: the tracker finds frame boundaries whatever the lengths'
// encodings, the masks and how the bytes are split.
func TestFramesBoundary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		sizes  []int
		masked bool
	}{
		{"small", []int{0, 5, 125}, false},
		{"16-bit length", []int{126, 300, 65535}, false},
		{"64-bit length", []int{65536, 70000}, true},
		{"masked", []int{0, 1, 200}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f frames
			for _, n := range tt.sizes {
				fr := wsFrame(n, tt.masked)
				for i := range fr {
					if f.boundary() != (i == 0) {
						t.Fatalf("frame of %d bytes: boundary() = %v after %d of %d bytes", n, f.boundary(), i, len(fr))
					}
					f.feed(fr[i : i+1])
				}
				if !f.boundary() {
					t.Fatalf("frame of %d bytes: no boundary at its end", n)
				}
			}
			// All frames at once, then one more split in the middle of its header.
			var all []byte
			for _, n := range tt.sizes {
				all = append(all, wsFrame(n, tt.masked)...)
			}
			f.feed(all)
			last := wsFrame(tt.sizes[len(tt.sizes)-1], tt.masked)
			f.feed(last[:1])
			if f.boundary() {
				t.Error("boundary() inside a header")
			}
			f.feed(last[1:])
			if !f.boundary() {
				t.Error("no boundary after the whole stream")
			}
		})
	}
}
