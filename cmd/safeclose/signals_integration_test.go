//go:build integration

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/internal/testguest"
)

// A reload signal that comes while the binary is still starting (store
// open, plugin compilation) must not kill it: `systemctl reload` or a
// config-management run right after a start sends SIGHUP, and Go's default
// for SIGHUP is to exit. The test sends SIGHUP every few milliseconds from
// the first line the process logs until it listens; the process must then
// answer /healthz and stop cleanly on SIGTERM.
func TestSIGHUPDuringStartupDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	wasm := testguest.Path(t, "plugins/examples/apikey")
	sock := listenSocket(t)
	sum := sha256.Sum256([]byte("k-alice"))
	cfgPath := filepath.Join(dir, "hup.yaml")
	// No keys: the "no keyring configured" warning is logged before the
	// store is opened and the plugin compiled.
	cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
emulator: {enabled: true, listen: 127.0.0.1:0}
tenants:
  - name: h
    hosts: [127.0.0.1]
    plaid: {env: emulator}
    auth:
      plugin:
        path: %s
        capabilities: [config, crypto]
        config: {keys: {"%s": alice}}
`, sock.Addr, filepath.Join(dir, "data"), wasm, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binaryPath(t), "serve", "-config", cfgPath, "-watch", "0")
	logs, exited := launchWatched(t, cmd, sock)

	started := func() bool { return strings.Contains(logs.String(), "no keyring configured") }
	listening := func() bool { return strings.Contains(logs.String(), "safeclose listening on") }
	sent := 0
	for range 12000 { // 60 s at most
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the process exited during start-up after %d SIGHUPs: %v", sent, err)
		default:
		}
		if listening() {
			break
		}
		if started() {
			if err := cmd.Process.Signal(syscall.SIGHUP); err == nil {
				sent++
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !listening() {
		t.Fatal("not listening after 60 s")
	}
	if sent == 0 {
		t.Fatal("no SIGHUP was sent during start-up; the test proved nothing")
	}
	t.Logf("%d SIGHUPs sent during start-up", sent)

	m := adminLine.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatal("no admin address in the listening line")
	}
	client := &http.Client{Timeout: 2 * time.Second}
	ready := false
	for range 300 {
		if res, err := client.Get("http://" + m[1] + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				ready = true
				break
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the process exited after start-up: %v", err)
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ready {
		t.Fatal("/healthz never answered 200")
	}

	stopCleanly(t, cmd, exited)
}

// launchWatched starts cmd (a serve of the binary) with sock as its
// socket-activated listener (fd 3) and its output in the returned log; the
// channel receives its exit (put it back after reading, for the cleanup).
// The test's cleanup SIGKILLs it and prints the log if the test failed.
func launchWatched(t *testing.T, cmd *exec.Cmd, sock *socket) (*procLog, chan error) {
	t.Helper()
	logs := &procLog{}
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{sock.f}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("output:\n%s", logs.String())
		}
	})
	return logs, exited
}

// stopCleanly sends SIGTERM to a process started by launchWatched and
// fails the test unless it exits with status 0 within 30 s.
func stopCleanly(t *testing.T, cmd *exec.Cmd, exited chan error) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
}

// waitListening waits (bounded: 60 s) for the process started by
// launchWatched to print its listening line, failing if it exits first.
func waitListening(t *testing.T, logs *procLog, exited chan error) {
	t.Helper()
	for i := 0; !strings.Contains(logs.String(), "safeclose listening on"); i++ {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the process exited during start-up: %v", err)
		default:
		}
		if i == 3000 {
			t.Fatal("not listening after 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyTenantConfig writes a serve config for sock with one tenant on
// 127.0.0.1 authenticated by the API key "k-alice" (user alice), proxying
// to upstream when it is not empty, and returns its path.
func keyTenantConfig(t *testing.T, dir string, sock *socket, upstream string) string {
	t.Helper()
	sum := sha256.Sum256([]byte("k-alice"))
	up := ""
	if upstream != "" {
		up = "\n    upstream: " + upstream
	}
	path := filepath.Join(dir, "serve.yaml")
	cfg := fmt.Sprintf(`listen: %s
admin_listen: 127.0.0.1:0
data_dir: %s
emulator: {enabled: true, listen: 127.0.0.1:0}
tenants:
  - name: k
    hosts: [127.0.0.1]%s
    plaid: {env: emulator}
    auth: {api_keys: [{sha256: "%s", user: alice}]}
`, sock.Addr, filepath.Join(dir, "data"), up, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
