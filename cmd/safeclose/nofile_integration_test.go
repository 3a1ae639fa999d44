//go:build integration

package main

import (
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A flood of connections that uses up the process's file descriptors
// (here a limit of 128, under systemd LimitNOFILE) makes accept fail with
// EMFILE. The binary exited 1 on the first such error ("accept4: too many
// open files"); it must keep running and serve again once the flood's
// connections close.
func TestConnectionFloodPastNOFILEDoesNotKill(t *testing.T) {
	dir := t.TempDir()
	sock := listenSocket(t)
	cfgPath := keyTenantConfig(t, dir, sock, "")
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 128 && exec "$0" "$@"`, binaryPath(t), "serve", "-config", cfgPath, "-watch", "0")
	logs, exited := launchWatched(t, cmd, sock)
	alive := func(when string) {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the process exited %s: %v", when, err)
		default:
		}
	}
	waitListening(t, logs, exited)

	var flood []net.Conn
	for range 300 {
		c, err := net.DialTimeout("tcp", sock.Addr, time.Second)
		if err != nil {
			break
		}
		flood = append(flood, c)
	}
	// Accepting through the backlog, the process meets its limit.
	for i := 0; !strings.Contains(logs.String(), "too many open files"); i++ {
		alive("while flooded")
		if i == 500 {
			t.Fatal("the flood never exhausted the descriptors; the test proved nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range flood {
		c.Close()
	}

	client := &http.Client{Timeout: 2 * time.Second}
	for i := 0; ; i++ {
		alive("after the flood")
		req, _ := http.NewRequest("GET", "http://"+sock.Addr+"/x", nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			break // any answer: serving again
		}
		if i == 100 {
			t.Fatal("no answer after the flood ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopCleanly(t, cmd, exited)
}
