package hostabi

import (
	"bytes"
	"testing"
)

// FuzzCookieValue: the Cookie header parser the host runs on client bytes
// never panics, and what it returns is a value of one pair: no separator
// inside, and the pair's name really is the one asked for.
func FuzzCookieValue(f *testing.F) {
	f.Add([]byte(`a=1; sid="s3cret"; b=2`), "sid")
	f.Add([]byte(`sid=`), "sid")
	f.Add([]byte(`;;;=;`), "")
	f.Add([]byte(`sid="`), "sid")
	f.Fuzz(func(t *testing.T, header []byte, name string) {
		v, ok := cookieValue(header, name)
		if !ok {
			return
		}
		if bytes.IndexByte(v, ';') >= 0 {
			t.Fatalf("cookieValue(%q, %q) = %q spans pairs", header, name, v)
		}
		if !bytes.Contains(header, []byte(name+"=")) {
			t.Fatalf("cookieValue(%q, %q) found a name the header does not have", header, name)
		}
	})
}
