package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/configs"
	"github.com/safeclose/safeclose/internal/plaidsim"
	"github.com/safeclose/safeclose/internal/testguest"
)

// The browser test runs the whole stack the way `make demo` does, on
// loopback ports the kernel picks: the Plaid emulator and the app's
// upstream in this process, Safeclose as its real binary (built from the
// tree, with the auth plugin built from ./authplugin), and the React bundle
// built by esbuild from ./src.

const (
	emuClientID = "webapp-test"
	emuSecret   = "webapp-test-secret"
)

// stack is a running emulator + upstream + Safeclose.
type stack struct {
	base   string // Safeclose, the one URL the browser opens
	emuURL string
	emu    *plaidsim.Server
	logs   string // Safeclose's log file
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func randomB64(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// requireOrSkip skips when a prerequisite `make test-deps` provides is
// missing, except under CI=true, where a skip would hide the test.
func requireOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (`make test-deps` installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// bundle builds the React app with the esbuild from package.json into dist/,
// so the test runs the code in src/.
func bundle(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("node_modules/react-plaid-link"); err != nil {
		requireOrSkip(t, "examples/webapp/node_modules is missing (npm ci)")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		requireOrSkip(t, "npm is not installed")
	}
	cmd := exec.Command("npm", "run", "--silent", "build")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm run build: %v\n%s", err, b)
	}
	dist, err := filepath.Abs("dist")
	if err != nil {
		t.Fatal(err)
	}
	return dist
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	requireOrSkip(t, "chromium is not installed")
	return ""
}

// Safeclose is built once per test binary, and the auth plugin by
// internal/testguest (cached by source hash), both from the tree.
var (
	buildOnce   sync.Once
	buildDir    string
	buildPlugin string
	buildErr    error
)

func binaries(t *testing.T) (bin, plugin string) {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "webapp-test-"); buildErr != nil {
			return
		}
		if buildPlugin, buildErr = testguest.Build("examples/webapp/authplugin"); buildErr == nil {
			buildErr = goBuild(filepath.Join(buildDir, "safeclose"), "./cmd/safeclose")
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "safeclose"), buildPlugin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// startStack starts the emulator, the app's upstream and Safeclose. With
// devLinkScript the page gets `make demo`'s substitution for Plaid's CDN
// script instead of the production page.
func startStack(t *testing.T, dist string, devLinkScript bool) *stack {
	t.Helper()
	dir := t.TempDir()
	sessionKey := randomB64(t, 32)

	emu, err := plaidsim.New(plaidsim.Options{ClientID: emuClientID, Secret: emuSecret, TimeScale: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	emuURL := serve(t, emu)
	t.Cleanup(func() { _ = emu.Close() })

	o := Options{Dist: dist, SessionKey: []byte(sessionKey)}
	if devLinkScript {
		o.LinkScript = emuURL + plaidsim.LinkScriptPath
	}
	h, err := newHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	upstream := serve(t, h)

	bin, plugin := binaries(t)

	// The public socket is opened here and handed over (LISTEN_FDS=1), so
	// its address is known before the binary starts.
	ln := listen(t)
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); ln.Close() })
	base := "http://" + ln.Addr().String()

	conf := filepath.Join(dir, "safeclose.yaml")
	yaml := strings.NewReplacer("@DATA@", filepath.Join(dir, "data"), "@UPSTREAM@", upstream, "@EMU@", emuURL,
		"@BASE@", base, "@PLUGIN@", plugin, "@PUBLIC@", demoPublicRoutes(t)).Replace(testConfig)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "safeclose.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", conf, "-watch", "0")
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "SAFECLOSE_KEYS=t1:"+randomB64(t, 32),
		"WEBAPP_SESSION_KEY="+sessionKey, "EMU_CLIENT_ID="+emuClientID, "EMU_SECRET="+emuSecret)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	s := &stack{base: base, emuURL: emuURL, emu: emu, logs: logPath}
	// The socket is listening already; the first answer says the binary
	// serves (the page is a public route of the auth plugin).
	c := &http.Client{Timeout: 90 * time.Second}
	res, err := c.Get(base + "/")
	if err != nil {
		t.Fatalf("safeclose did not answer: %v\n%s", err, s.log())
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / through safeclose = %d, want 200\n%s", res.StatusCode, s.log())
	}
	return s
}

// demoPublicRoutes is the auth plugin's public list from configs/demo.yaml,
// as a YAML flow sequence, so the test runs what `make demo` runs.
func demoPublicRoutes(t *testing.T) string {
	t.Helper()
	f, err := configs.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f.Tenants[0].Auth.Plugin.Config["public"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *stack) log() string {
	b, err := os.ReadFile(s.logs)
	if err != nil {
		return err.Error()
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// linkScript is the emulator's link-initialize.js, which the browser gets in
// place of Plaid's CDN script.
func (s *stack) linkScript(t *testing.T) []byte {
	t.Helper()
	res, err := http.Get(s.emuURL + plaidsim.LinkScriptPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", plaidsim.LinkScriptPath, res.StatusCode, err)
	}
	return b
}

// resetLogin is the bank asking the user to log in again: the emulator sets
// ITEM_LOGIN_REQUIRED and sends Plaid's signed ITEM/ERROR webhook to
// Safeclose.
func (s *stack) resetLogin(t *testing.T, itemID string) {
	t.Helper()
	res, err := http.Post(s.emuURL+"/__emu/item/reset_login", "application/json", strings.NewReader(`{"item_id":"`+itemID+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reset_login = %d %s", res.StatusCode, b)
	}
}

// get fetches path through Safeclose with no session.
func (s *stack) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := http.Get(s.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// artifactDir is where screenshots go: $SAFECLOSE_ARTIFACTS/<test> when set,
// else t.ArtifactDir() (kept with `go test -artifacts -outputdir DIR`).
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SAFECLOSE_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

const testConfig = `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: @DATA@
keys: env:SAFECLOSE_KEYS
log_level: info
webhooks:
  workers: 2
  backoff: 1s
tenants:
  - name: webapp
    hosts: [127.0.0.1]
    upstream: @UPSTREAM@
    plaid:
      env: @EMU@
      client_id: env:EMU_CLIENT_ID
      secret: env:EMU_SECRET
      client_name: Acme Budget
      products: [transactions]
      country_codes: [US]
      language: en
      webhook_url: @BASE@/api/webhooks/plaid
    auth:
      plugin:
        name: webapp-auth
        path: @PLUGIN@
        timeout: 2s      # a first call on a busy machine can take longer than the 100ms default
        capabilities: [config, crypto, log]
        config:
          cookie: session
          public: @PUBLIC@
          jwt: {issuer: safeclose-webapp, audience: webapp}
        secrets: {main: env:WEBAPP_SESSION_KEY}
`
