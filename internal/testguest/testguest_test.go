package testguest

import (
	"os"
	"path/filepath"
	"testing"
)

// Issue 10.7: the cache key follows the guest's sources, so an edited guest
// is rebuilt and an unchanged one is not.
func TestSourceKeyFollowsSources(t *testing.T) {
	root := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/g\n\ngo 1.24\n")
	write("lib/lib.go", "package lib\n\nconst N = 1\n")
	write("g/main.go", "package main\n\nimport \"example.com/g/lib\"\n\nfunc main() { _ = lib.N }\n")
	key := func() string {
		t.Helper()
		k, err := sourceKey(root, "g")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1 := key()
	if k2 := key(); k2 != k1 {
		t.Fatalf("sourceKey changed with no edit: %s, then %s", k1, k2)
	}
	write("lib/lib.go", "package lib\n\nconst N = 2\n")
	k3 := key()
	if k3 == k1 {
		t.Fatalf("sourceKey = %s after editing a dependency; want a new key", k3)
	}
	write("g/main.go", "package main\n\nimport \"example.com/g/lib\"\n\nfunc main() { println(lib.N) }\n")
	if k4 := key(); k4 == k3 {
		t.Fatalf("sourceKey = %s after editing the guest; want a new key", k4)
	}
}

// Build returns the same cached file twice, and that file is a Wasm module.
func TestBuildIsCached(t *testing.T) {
	t.Setenv("SAFECLOSE_TEST_CACHE", t.TempDir())
	p1, err := build("hostabi/testdata/guests/allow")
	if err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := build("hostabi/testdata/guests/allow")
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(p2)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatalf("second build = %s (%v); want the cached %s (%v)", p2, st2.ModTime(), p1, st1.ModTime())
	}
	b, err := os.ReadFile(p1)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		t.Fatalf("%s is not a Wasm module", p1)
	}
}
