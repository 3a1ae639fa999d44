package wasmcheck

import (
	"errors"
	"testing"
)

const hdr = "\x00asm\x01\x00\x00\x00"

// A module with one function () -> () whose body declares the given local
// groups (each "count LEB ‖ type").
func withLocals(groups string, n byte) string {
	body := string([]byte{n}) + groups + "\x0b"
	code := "\x01" + string([]byte{byte(len(body))}) + body
	return hdr + "\x01\x04\x01\x60\x00\x00" + "\x03\x02\x01\x00" + "\x0a" + string([]byte{byte(len(code))}) + code
}

// Issue 10.9: FuzzInstrument found that wazero v1.12 allocates by counts a
// module declares before checking them against its bytes, so a 15-byte
// module ends the process with a fatal out-of-memory error. Check refuses
// those counts and lets every well-formed module through.
func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		bad  bool
	}{
		{"empty module", hdr, false},
		{"not wasm", "hello", false},
		{"truncated section", hdr + "\x01\x10\x00", true},
		{"custom section", hdr + "\x00\x05\x04note", false},
		{"custom section, empty name", hdr + "\x00\x01\x00", false},
		{"name section", hdr + "\x00\x0c\x04name\x01\x05\x01\x00\x02fn", false},
		{"function type", hdr + "\x01\x07\x01\x60\x02\x7f\x7e\x01\x7f", false},
		{"import", hdr + "\x02\x08\x01\x01m\x01f\x03\x7f\x00", false},
		{"export", hdr + "\x07\x05\x01\x01f\x00\x00", false},
		{"data segment", hdr + "\x0b\x08\x01\x00\x41\x00\x0b\x02hi", false},
		{"element segment", hdr + "\x09\x07\x01\x00\x41\x00\x0b\x01\x00", false},
		{"truncated section, big count", hdr + "\x01\x10\x7f", true},
		{"small function", withLocals("\x02\x7f\x01\x7e", 2), false},
		{"MaxLocals locals", withLocals("\xd0\x86\x03\x7f", 1), false}, // 50000
		{"ref locals", withLocals("\x01\x63\x70", 1), false},
		{"fuzz crasher: code count", hdr + "\x0a\x30\x80\xff\xff\x32\x30", true},
		{"fuzz crasher: section size", hdr + "\x0a\x00\x80\xff\xff\x30\x7e", true},
		{"custom section size", hdr + "\x00\xff\xff\xff\xff\x0f\x01n", true},
		{"name section function count", hdr + "\x00\x0b\x04name\x01\x05\xff\xff\xff\xff\x0f", true},
		{"name section name", hdr + "\x00\x0d\x04name\x01\x07\x01\x00\xff\xff\xff\xff\x0f", true},
		{"type params", hdr + "\x01\x07\x01\x60\xff\xff\xff\xff\x0f", true},
		{"import name", hdr + "\x02\x06\x01\xff\xff\xff\xff\x0f", true},
		{"export name", hdr + "\x07\x06\x01\xff\xff\xff\xff\x0f", true},
		{"data bytes", hdr + "\x0b\x0a\x01\x00\x41\x00\x0b\xff\xff\xff\xff\x0f", true},
		{"element functions", hdr + "\x09\x0a\x01\x00\x41\x00\x0b\xff\xff\xff\xff\x0f", true},
		{"code count", hdr + "\x0a\x05\xff\xff\xff\xff\x0f", true},
		{"type count", hdr + "\x01\x05\xff\xff\xff\xff\x0f", true},
		{"import count", hdr + "\x02\x05\xff\xff\xff\xff\x0f", true},
		{"function count", hdr + "\x03\x05\xff\xff\xff\xff\x0f", true},
		{"table count", hdr + "\x04\x05\xff\xff\xff\xff\x0f", true},
		{"global count", hdr + "\x06\x05\xff\xff\xff\xff\x0f", true},
		{"export count", hdr + "\x07\x05\xff\xff\xff\xff\x0f", true},
		{"element count", hdr + "\x09\x05\xff\xff\xff\xff\x0f", true},
		{"data count section", hdr + "\x0c\x05\xff\xff\xff\xff\x0f", true},
		{"data count", hdr + "\x0b\x05\xff\xff\xff\xff\x0f", true},
		{"tag count", hdr + "\x0d\x05\xff\xff\xff\xff\x0f", true},
		{"too many locals", withLocals("\xf0\xff\xff\xff\x0f\x7f", 1), true},
		{"MaxLocals+1 locals", withLocals("\xd0\x86\x03\x7f\x01\x7e", 2), true},
		{"local groups", withLocals("\x7f", 0xff), true}, // ff 7f: 16383 groups
		{"local group count", withLocals("\x7f", 0x7f), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check([]byte(tt.in))
			if tt.bad != (err != nil) || (err != nil && !errors.Is(err, ErrBounds)) {
				t.Errorf("Check(% x) = %v, want bad=%v", tt.in, err, tt.bad)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(withLocals("\x02\x7f", 1)))
	f.Add([]byte(hdr + "\x0a\x30\x80\xff\xff\x32\x30"))
	f.Add([]byte(hdr + "\x00\x0c\x04name\x01\x05\x01\x00\x02fn"))
	f.Add([]byte(hdr + "\x0b\x08\x01\x00\x41\x00\x0b\x02hi"))
	f.Add([]byte(hdr + "\x09\x07\x01\x00\x41\x00\x0b\x01\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = Check(in) // never panics
	})
}
