//go:build integration

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// When the public listener fails for good (here shut down under the
// process, as a broken socket activation or network namespace would), serve
// stops as on SIGTERM: requests in flight finish and the process exits with
// the error. Before, it returned at once, cutting the requests in flight and
// leaving leased webhooks to their lease.
func TestListenerFailureStopsGracefully(t *testing.T) {
	dir := t.TempDir()
	sock := listenSocket(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "done")
	}))
	defer app.Close()
	cfgPath := keyTenantConfig(t, dir, sock, app.URL)
	cmd := exec.Command(binaryPath(t), "serve", "-config", cfgPath, "-watch", "0")
	logs, exited := launchWatched(t, cmd, sock)
	waitListening(t, logs, exited)

	type answer struct {
		status int
		body   string
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+sock.Addr+"/slow", nil)
		req.Header.Set("Authorization", "Bearer k-alice")
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- answer{status: res.StatusCode, body: string(b)}
	}()
	time.Sleep(400 * time.Millisecond) // the request is at the upstream
	// The test holds the same listening socket: shutting it down makes the
	// process's accept fail with EINVAL, an error no retry cures.
	if err := syscall.Shutdown(int(sock.f.Fd()), syscall.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || a.status != 200 || a.body != "done" {
		t.Fatalf("the request in flight when the listener failed = %d %q, %v; want 200 done", a.status, a.body, a.err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err == nil {
			t.Fatal("exit status 0 after the listener failed, want the error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after its listener failed")
	}
}
