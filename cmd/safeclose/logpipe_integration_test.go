//go:build integration

package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// The log's reader going away (a log shipper restarted, `serve | tee` with
// tee killed) made every later log line a write to a broken pipe, and Go
// ends a program on SIGPIPE from its standard output or error: the proxy
// died with it. It must keep serving, and count the lines it could not
// write (safeclose_log_write_errors_total) so the loss can be alerted on.
func TestLogReaderGoneDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	sock := listenSocket(t)
	cfgPath := keyTenantConfig(t, dir, sock, "")
	cmd := exec.Command(binaryPath(t), "serve", "-config", cfgPath, "-watch", "0")
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{sock.f}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe() // the log: its reader leaves at once
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr.Close()
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	var admin string
	select {
	case l := <-lines:
		m := regexp.MustCompile(`admin http://([0-9.:]+)\)`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("first line %q names no admin address", l)
		}
		admin = m[1]
	case err := <-exited:
		exited <- err
		t.Fatalf("the process exited before listening, its log's reader gone: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("not listening after 60 s")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 { // each request writes an access log line
		req, _ := http.NewRequest("GET", "http://"+sock.Addr+"/x", nil)
		req.Header.Set("Authorization", "Bearer k-alice")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d with the log's reader gone: %v", i, err)
		}
		res.Body.Close()
	}
	res, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("admin /metrics with the log's reader gone: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`(?m)^safeclose_log_write_errors_total ([0-9.e+]+)$`).FindStringSubmatch(string(b))
	if m == nil || m[1] == "0" {
		t.Errorf("safeclose_log_write_errors_total = %v, want > 0 (lines lost to the broken pipe)", m)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("the process exited: %v", err)
	default:
	}
}
