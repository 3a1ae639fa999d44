//go:build integration

package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The binary behind a layer-4 balancer: with proxy_protocol, a connection
// from the balancer's address is read after its PROXY header, and the app
// sees the client the header names in X-Forwarded-For.
func TestServeBehindProxyProtocolBalancer(t *testing.T) {
	dir := t.TempDir()
	sock := listenSocket(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}))
	defer app.Close()
	cfgPath := keyTenantConfig(t, dir, sock, app.URL)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(f, "proxy_protocol: {from: [127.0.0.1]}\n")
	f.Close()
	cmd := exec.Command(binaryPath(t), "serve", "-config", cfgPath, "-watch", "0")
	logs, exited := launchWatched(t, cmd, sock)
	waitListening(t, logs, exited)

	c, err := net.DialTimeout("tcp", sock.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 40000 80\r\n"+
		"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k-alice\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "203.0.113.7" {
		t.Fatalf("behind the balancer: %d %q; want 200 and the app seeing 203.0.113.7", res.StatusCode, b)
	}
	stopCleanly(t, cmd, exited)
}
