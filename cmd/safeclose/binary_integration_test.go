//go:build integration

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binary tests (isolation, reload, crash, replicas) run the real
// safeclose binary. This file is their one way to build it (once per test
// binary), start it on a socket the test owns, wait for /readyz, capture its
// output, and SIGKILL, restart or stop it. A failing test prints the last
// tailLines lines of every process it started.

const tailLines = 40

// binaryBuild is the safeclose binary of this test run, built on first use by
// binaryPath and removed by TestMain.
var binaryBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaryBuild.dir != "" {
		os.RemoveAll(binaryBuild.dir)
	}
	os.Exit(code)
}

// binaryPath builds the safeclose binary from the tree, once per test
// binary, and returns its path.
func binaryPath(t *testing.T) string {
	t.Helper()
	binaryBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "safeclose-bin-")
		if err != nil {
			binaryBuild.err = err
			return
		}
		binaryBuild.dir = dir
		binaryBuild.path = filepath.Join(dir, "safeclose")
		if out, err := exec.Command("go", "build", "-o", binaryBuild.path, ".").CombinedOutput(); err != nil {
			binaryBuild.err = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	if binaryBuild.err != nil {
		t.Fatal(binaryBuild.err)
	}
	return binaryBuild.path
}

// socket is a public listening socket owned by the test and handed to every
// start of a process as fd 3 (socket activation, LISTEN_FDS=1): it outlives
// restarts, so connections queue in its backlog while the process is down,
// as under systemd.
type socket struct {
	Addr string // host:port
	f    *os.File
}

// listenSocket opens a socket on 127.0.0.1:0; it is closed after the test.
func listenSocket(t *testing.T) *socket {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); ln.Close() })
	return &socket{Addr: ln.Addr().String(), f: f}
}

// procOpts says how to run `safeclose serve`.
type procOpts struct {
	Name   string   // names the process in failure output; zero means "serve"
	Socket *socket  // the public socket; nil means a new one (see Addr)
	Env    []string // added to the test's environment (LISTEN_FDS=1 is always set)
	Args   []string // flags after -config PATH, e.g. -watch 100ms
}

// serveProc is one `safeclose serve` across its restarts. Its methods are
// called from the test goroutine only (they may call t.Fatal); Logs, Tail
// and Logged are safe from any goroutine.
type serveProc struct {
	t      *testing.T
	bin    string
	cfg    string
	opts   procOpts
	logs   *procLog
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been reaped
	admin  string        // admin address of the current start
	starts int
}

// startServe starts `safeclose serve -config cfgPath` and waits until its
// /readyz answers 200. The process is stopped after the test; if the test
// failed, the last tailLines lines of its output are logged.
func startServe(t *testing.T, cfgPath string, opts procOpts) *serveProc {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "serve"
	}
	if opts.Socket == nil {
		opts.Socket = listenSocket(t)
	}
	p := &serveProc{t: t, bin: binaryPath(t), cfg: cfgPath, opts: opts, logs: &procLog{}}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last %d log lines of %s:\n%s", tailLines, p.opts.Name, p.Tail(tailLines))
		}
	})
	p.Start()
	return p
}

// Addr is the public address (host:port); it is the same across restarts.
func (p *serveProc) Addr() string { return p.opts.Socket.Addr }

// URL is "http://" + Addr.
func (p *serveProc) URL() string { return "http://" + p.opts.Socket.Addr }

// AdminAddr is the admin listener's address of the current start.
func (p *serveProc) AdminAddr() string { return p.admin }

// Start starts the process again after Kill (or Stop) and waits until it
// is ready.
func (p *serveProc) Start() {
	p.t.Helper()
	p.starts++
	begin := time.Now()
	mark := p.logs.mark(fmt.Sprintf("--- %s start %d ---\n", p.opts.Name, p.starts))
	cmd := exec.Command(p.bin, append([]string{"serve", "-config", p.cfg}, p.opts.Args...)...)
	cmd.Env = append(append(os.Environ(), p.opts.Env...), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{p.opts.Socket.f} // fd 3
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: start: %v", p.opts.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited, p.admin = cmd, exited, ""
	p.waitReady(mark)
	p.t.Logf("%s start %d ready in %v", p.opts.Name, p.starts, time.Since(begin).Round(time.Millisecond))
}

var adminLine = regexp.MustCompile(`safeclose listening on \S+ \(admin http://([^)\s]+)\)`)

// waitReady waits (at most 60s) for the start's listening line, then for
// /readyz to answer 200.
func (p *serveProc) waitReady(mark int) {
	p.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for range 3000 {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited before it was ready (start %d)", p.opts.Name, p.starts)
		default:
		}
		if time.Now().After(deadline) {
			break
		}
		if p.admin == "" {
			if m := adminLine.FindStringSubmatch(p.logs.since(mark)); m != nil {
				p.admin = m[1]
			}
		}
		if p.admin != "" {
			if res, err := client.Get("http://" + p.admin + "/readyz"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("%s not ready after 60s (start %d)", p.opts.Name, p.starts)
}

// Kill sends SIGKILL and reaps the process.
func (p *serveProc) Kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not exit after SIGKILL", p.opts.Name)
	}
	p.logs.mark(fmt.Sprintf("--- %s SIGKILL ---\n", p.opts.Name))
}

// Restart kills the process (SIGKILL), starts it again on the same socket
// and waits until it is ready.
func (p *serveProc) Restart() {
	p.t.Helper()
	p.Kill()
	p.Start()
}

// Stop sends SIGTERM and waits up to 15s for the exit, then SIGKILLs. It
// does nothing when the process has already exited.
func (p *serveProc) Stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Logf("%s did not exit 15s after SIGTERM; sending SIGKILL", p.opts.Name)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// Logs returns everything the process wrote, over all its starts.
func (p *serveProc) Logs() string { return p.logs.String() }

// Tail returns the last n lines of Logs.
func (p *serveProc) Tail(n int) string {
	lines := strings.SplitAfter(p.logs.String(), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// Logged reports whether the output contains s.
func (p *serveProc) Logged(s string) bool { return strings.Contains(p.logs.String(), s) }

// waitFor polls cond every 50ms, at most 300 times (15s), and fails the
// test when it never holds (the cleanup then logs the process's tail).
func (p *serveProc) waitFor(what string, cond func() bool) {
	p.t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("timed out waiting for %s", what)
}

// procLog is a process's combined stdout and stderr, safe for concurrent use.
type procLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *procLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// mark appends a separator line and returns the offset after it.
func (l *procLog) mark(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(s)
	return l.buf.Len()
}

// since returns what was written after offset.
func (l *procLog) since(offset int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf.Bytes()[offset:])
}
