package proxy

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// emfileListener fails its first fails Accepts with the error a process
// out of file descriptors gets (accept4: too many open files), then
// accepts.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of file descriptors (a flood of idle connections, or a low
// LimitNOFILE) makes accept fail with EMFILE until a connection closes.
// fasthttp's Serve returned on it and the process exited 1 with every
// request in flight cut off; Serve must keep accepting once descriptors
// are free again, as net/http's does.
func TestServeKeepsAcceptingAfterEMFILE(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := New(Options{Store: db, Tenants: shutdownTenants(t), IdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: ln}
	fl.fails.Store(3)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(fl) }()

	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+ln.Addr().String()+"/", nil)
	req.Host = "nobody.test"
	res, err := client.Do(req)
	if err != nil {
		select {
		case serr := <-done:
			t.Fatalf("Serve returned on a passing accept error: %v", serr)
		default:
			t.Fatalf("no answer after the accept errors: %v", err)
		}
	}
	res.Body.Close()
	client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5 s after Shutdown")
	}
}
