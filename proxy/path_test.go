package proxy

import (
	"bytes"
	"errors"
	"testing"
)

// Issue 9.4: one normalised path; ambiguous forms refused.
func TestNormalizePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string // want "" = refused
	}{
		{"root", "/", "/"},
		{"plain", "/a/b", "/a/b"},
		{"trailing slash kept", "/a/b/", "/a/b/"},
		{"dot", "/a/./b", "/a/b"},
		{"dotdot", "/public/../admin", "/admin"},
		{"dotdot above root", "/../../admin", "/admin"},
		{"trailing dot", "/a/b/.", "/a/b/"},
		{"trailing dotdot", "/a/b/..", "/a/"},
		{"only dotdot", "/..", "/"},
		{"double slash", "/a//b", "/a/b"},
		{"leading double slash", "//admin", "/admin"},
		{"double slash then dotdot", "/public//../admin", "/admin"},
		{"many slashes", "/a///b////", "/a/b/"},
		{"unreserved decoded", "/%7Euser/%41%62%2D%5f%2E", "/~user/Ab-_."},
		{"encoded dot inside name", "/a%2eb", "/a.b"},
		{"reserved kept, hex uppercased", "/a%3fb%23c%25d%3a", "/a%3Fb%23c%25d%3A"},
		{"non-ASCII encoded", "/caf\xc3\xa9", "/caf%C3%A9"},
		{"utf-8 encoded kept", "/caf%c3%a9", "/caf%C3%A9"},
		{"unsafe ASCII encoded", "/a\"<>{}|^`b", "/a%22%3C%3E%7B%7D%7C%5E%60b"},
		{"sub-delims kept", "/a;b=c,d!$&'()*+:@", "/a;b=c,d!$&'()*+:@"},
		{"three dots is a name", "/a/.../b", "/a/.../b"},
		{"dot-prefixed name", "/a/.well-known", "/a/.well-known"},

		{"encoded slash", "/public/..%2Fadmin", ""},
		{"encoded slash lower", "/a%2fb", ""},
		{"backslash", "/public\\..\\admin", ""},
		{"encoded backslash", "/a%5Cb", ""},
		{"encoded dotdot", "/public/%2e%2e/admin", ""},
		{"mixed encoded dotdot", "/public/.%2E/admin", ""},
		{"encoded dot", "/public/%2E/admin", ""},
		{"trailing encoded dotdot", "/public/%2e%2e", ""},
		{"dotdot with params", "/public/..;/admin", ""},
		{"dot with params", "/public/.;x/admin", ""},
		{"NUL", "/a\x00b", ""},
		{"encoded NUL", "/a%00b", ""},
		{"control", "/a\x01b", ""},
		{"encoded control", "/a%0Ab", ""},
		{"DEL", "/a\x7fb", ""},
		{"encoded DEL", "/a%7fb", ""},
		{"fragment", "/a#b", ""},
		{"bad percent", "/a%zzb", ""},
		{"short percent", "/a%2", ""},
		{"lone percent", "/a%", ""},
		{"relative", "a/b", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := normalizePath(nil, []byte(tt.in))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("normalizePath(%q) = %q, want refusal", tt.in, got)
				}
				if st, d := classify(err); st != 400 || d.Code != "invalid_path" {
					t.Errorf("normalizePath(%q) error classifies as %d %s, want 400 invalid_path", tt.in, st, d.Code)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("normalizePath(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
			again, err := normalizePath(nil, got)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("normalizePath(%q) = %q, %v, not idempotent", got, again, err)
			}
		})
	}
}

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, path, query string
		hasQuery, bad   bool
	}{
		{in: "/a?b=1", path: "/a", query: "b=1", hasQuery: true},
		{in: "/a?", path: "/a", hasQuery: true},
		{in: "/a?x=/../y?z", path: "/a", query: "x=/../y?z", hasQuery: true},
		{in: "http://t1.test/a/../b?q", path: "/a/../b", query: "q", hasQuery: true},
		{in: "HTTPS://t1.test", path: "/"},
		{in: "http://t1.test?q", path: "/", query: "q", hasQuery: true},
		{in: "*", bad: true},
		{in: "t1.test:443", bad: true},
		{in: "ftp://x/y", bad: true},
	}
	for _, tt := range tests {
		p, q, hq, err := splitTarget([]byte(tt.in))
		if tt.bad {
			if err == nil {
				t.Errorf("splitTarget(%q) accepted, want refusal", tt.in)
			}
			continue
		}
		if err != nil || string(p) != tt.path || string(q) != tt.query || hq != tt.hasQuery {
			t.Errorf("splitTarget(%q) = %q, %q, %v, %v, want %q, %q, %v", tt.in, p, q, hq, err, tt.path, tt.query, tt.hasQuery)
		}
	}
}

// Issue 9.4: the normaliser never panics, is idempotent and never leaves a
// dot segment or "//".
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b/../c", "/public/%2e%2e/admin", "/public//../admin", "/a/%41%7e", "//", "/..;/x",
		"/a/.%2E/b", "/caf\xc3\xa9", "/a%2", "/./././", "/a/b/c/../../..", "/%25%32%65",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := normalizePath(nil, in)
		if err != nil {
			var br *badRequestError
			if !errors.As(err, &br) || br.code != "invalid_path" {
				t.Fatalf("normalizePath(%q) error %v is not invalid_path", in, err)
			}
			return
		}
		if len(out) == 0 || out[0] != '/' {
			t.Fatalf("normalizePath(%q) = %q, want a leading '/'", in, out)
		}
		if bytes.Contains(out, []byte("//")) {
			t.Fatalf("normalizePath(%q) = %q contains //", in, out)
		}
		for seg := range bytes.SplitSeq(out[1:], []byte("/")) {
			if string(seg) == "." || string(seg) == ".." {
				t.Fatalf("normalizePath(%q) = %q has a dot segment", in, out)
			}
		}
		for _, c := range out {
			if c < 0x21 || c >= 0x7f || c == '\\' || c == '#' || c == '?' {
				t.Fatalf("normalizePath(%q) = %q holds byte %#x", in, out, c)
			}
		}
		again, err := normalizePath(nil, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("normalizePath(%q) = %q; again = %q, %v: not idempotent", in, out, again, err)
		}
	})
}
