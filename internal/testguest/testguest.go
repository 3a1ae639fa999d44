// Package testguest builds the repository's Wasm test guests and example
// plugins for tests. A guest is built once per content hash of its sources
// (every non-standard package it imports, the build flags and the Go
// version) into an on-disk cache shared by every package's tests and by
// later runs, so `make test` links each guest at most once and an unchanged
// guest is not rebuilt at all. Dir also names a wazero compilation cache
// shared the same way, so a compiled guest is reused across packages and
// runs.
//
// The cache lives in $SAFECLOSE_TEST_CACHE, or else in the user cache
// directory (os.UserCacheDir()/safeclose-test). Deleting it is always safe.
//
// It is for tests only; it imports nothing from the module.
package testguest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// buildFlags are the flags every guest is built with; they are part of the
// cache key.
var buildFlags = []string{"-trimpath", "-buildmode=c-shared"}

// Dir is the root of the shared test cache, created if missing.
func Dir() (string, error) {
	d := os.Getenv("SAFECLOSE_TEST_CACHE")
	if d == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		d = filepath.Join(base, "safeclose-test")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("testguest: %w", err)
	}
	return d, nil
}

// CompilationCacheDir returns the shared directory for
// wazero.NewCompilationCacheWithDir (hostabi.Options.CacheDir). wazero
// writes its entries atomically, so concurrent test processes may share it.
func CompilationCacheDir(tb testing.TB) string {
	tb.Helper()
	d, err := Dir()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(d, "wazero")
}

// Wasm returns the bytes of the guest built from pkg, a directory relative
// to the module root such as "hostabi/testdata/guests/allow" or
// "plugins/examples/jwtauth".
func Wasm(tb testing.TB, pkg string) []byte {
	tb.Helper()
	path, err := Build(pkg)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Path is like Wasm but returns the path of the cached module. The file is
// shared: callers must not modify or remove it.
func Path(tb testing.TB, pkg string) string {
	tb.Helper()
	path, err := Build(pkg)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

type result struct {
	once sync.Once
	path string
	err  error
}

// built memoises Build within one test binary.
var built sync.Map // pkg → *result

// Build builds pkg (relative to the module root) for GOOS=wasip1 unless a
// build of the same sources is cached, and returns the cached module's path.
// It is safe for concurrent use, also across processes.
func Build(pkg string) (string, error) {
	r, _ := built.LoadOrStore(pkg, new(result))
	res := r.(*result)
	res.once.Do(func() { res.path, res.err = build(pkg) })
	return res.path, res.err
}

func build(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(root, pkg)
	if err != nil {
		return "", err
	}
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "guests", filepath.Base(pkg)+"-"+key+".wasm")
	return buildOnce(out, pkg, func(tmp string) *exec.Cmd {
		args := append([]string{"build"}, buildFlags...)
		args = append(args, "-o", tmp, "./"+filepath.ToSlash(pkg))
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		return cmd
	})
}

// buildOnce returns out if it exists; otherwise, holding out's lock file
// (other test processes build the same guests), it runs the command cmd
// returns for a temporary path and renames the result to out, so a reader
// never sees a partly written module. what names the guest in errors.
func buildOnce(out, what string, cmd func(tmp string) *exec.Cmd) (string, error) {
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("testguest: %w", err)
	}
	unlock, err := lockFile(out + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil { // another process built it
		return out, nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	if b, err := cmd(tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("testguest: build %s: %w\n%s", what, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("testguest: %w", err)
	}
	return out, nil
}

// sourceKey hashes the Go version, the build flags, and the names and
// contents of every file of every non-standard package pkg imports
// (itself included), as `go list` resolves them for GOOS=wasip1.
func sourceKey(root, pkg string) (string, error) {
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{.Dir}}{{range .GoFiles}}|{{.}}{{end}}{{range .EmbedFiles}}|{{.}}{{end}}{{end}}`,
		"./"+filepath.ToSlash(pkg))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("testguest: go list %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", runtime.Version(), strings.Join(buildFlags, " "))
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		parts := strings.Split(line, "|")
		dir := parts[0]
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = dir // outside the module: the module cache is immutable
		}
		for _, f := range parts[1:] {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return "", fmt.Errorf("testguest: %w", err)
			}
			fmt.Fprintf(h, "%s/%s\x00%d\x00", filepath.ToSlash(rel), f, len(b))
			h.Write(b)
		}
	}
	// go.mod and go.sum pin the versions of everything outside the module.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("testguest: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

var rootOnce = sync.OnceValues(func() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testguest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("testguest: no go.mod above the working directory")
		}
		d = up
	}
})

func moduleRoot() (string, error) { return rootOnce() }

// ErrNoNPM is returned by BuildAS when node is missing, or the
// AssemblyScript compiler is not installed and npm is missing to install
// it; tests skip on it unless CI=true.
var ErrNoNPM = errors.New("testguest: npm is missing; the AssemblyScript guests cannot be built")

// asSDK is the AssemblyScript SDK, relative to the module root; its
// node_modules hold the pinned compiler.
const asSDK = "plugins/sdk-as"

// WasmAS is Wasm for an AssemblyScript guest: entry is its .ts file
// relative to the module root, such as "plugins/examples-as/jwtauth/main.ts".
// It skips the test when npm is missing, unless CI=true.
func WasmAS(tb testing.TB, entry string) []byte {
	tb.Helper()
	path, err := BuildAS(entry)
	if errors.Is(err, ErrNoNPM) && os.Getenv("CI") != "true" {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BuildAS compiles an AssemblyScript guest with plugins/sdk-as/asc.sh (the
// flags plugins/build.sh uses) unless a build of the same sources is
// cached, and returns the cached module's path. The first call runs
// `npm ci` in plugins/sdk-as when its node_modules are missing or older
// than its package-lock.json. Safe for concurrent use, also across
// processes.
func BuildAS(entry string) (string, error) {
	r, _ := built.LoadOrStore("as:"+entry, new(result))
	res := r.(*result)
	res.once.Do(func() { res.path, res.err = buildAS(entry) })
	return res.path, res.err
}

var npmCI = sync.OnceValue(func() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	sdk := filepath.Join(root, asSDK)
	lock, err := os.Stat(filepath.Join(sdk, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("testguest: %w", err)
	}
	installed := func() bool {
		st, err := os.Stat(filepath.Join(sdk, "node_modules", ".package-lock.json"))
		_, aerr := os.Stat(filepath.Join(sdk, "node_modules", ".bin", "asc"))
		return err == nil && aerr == nil && !st.ModTime().Before(lock.ModTime())
	}
	if _, err := exec.LookPath("node"); err != nil {
		return ErrNoNPM // asc runs on node
	}
	if installed() {
		return nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return ErrNoNPM
	}
	unlock, err := lockFile(filepath.Join(sdk, ".npm-ci.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if installed() { // another process installed it
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = sdk
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testguest: npm ci in %s: %w\n%s", asSDK, err, b)
	}
	return nil
})

func buildAS(entry string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := npmCI(); err != nil {
		return "", err
	}
	key, err := asSourceKey(root, entry)
	if err != nil {
		return "", err
	}
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	name := strings.TrimSuffix(filepath.Base(entry), ".ts")
	if name == "main" {
		name = filepath.Base(filepath.Dir(entry))
	}
	out := filepath.Join(dir, "guests", name+"-as-"+key+".wasm")
	return buildOnce(out, entry, func(tmp string) *exec.Cmd {
		cmd := exec.Command("bash", filepath.Join(asSDK, "asc.sh"), filepath.FromSlash(entry), tmp)
		cmd.Dir = root
		return cmd
	})
}

// asSourceKey hashes the entry's name, every .ts file beside it and in the
// SDK's assembly/ directory, the SDK's asc.sh (the flags) and its
// package-lock.json (the compiler's version): an AssemblyScript guest
// imports its own directory and the SDK only.
func asSourceKey(root, entry string) (string, error) {
	files := []string{asSDK + "/asc.sh", asSDK + "/package-lock.json"}
	for _, d := range []string{filepath.Dir(filepath.FromSlash(entry)), filepath.Join(asSDK, "assembly")} {
		ts, err := filepath.Glob(filepath.Join(root, d, "*.ts"))
		if err != nil {
			return "", fmt.Errorf("testguest: %w", err)
		}
		for _, f := range ts {
			rel, _ := filepath.Rel(root, f)
			files = append(files, filepath.ToSlash(rel))
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", entry)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return "", fmt.Errorf("testguest: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}
