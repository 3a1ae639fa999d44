package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/safeclose/safeclose/store"
)

// A Shutdown that comes before Serve has handed its listener to fasthttp (a
// SIGTERM at the end of start-up) must still stop it: Serve returns and the
// port stops answering. Before the fix Serve served on for ever, with the
// caller's plugins already closed.
func TestShutdownBeforeServeStopsIt(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := New(Options{Store: db, Tenants: shutdownTenants(t), Webhooks: WebhookOptions{Workers: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		ln.Close()
		<-done
		t.Fatal("Serve after Shutdown was still serving 5 s later")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts connections after Shutdown")
	}
}

// The same race the other way round, many times: Serve started in a
// goroutine and Shutdown called at once, as cmd/safeclose does when the
// signal is already pending. Every Serve must return.
func TestShutdownRacingServeAlwaysStops(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 50 {
		srv, err := New(Options{Store: db, Tenants: shutdownTenants(t), Webhooks: WebhookOptions{Workers: 1}})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("round %d: Shutdown: %v", i, err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Serve: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			ln.Close()
			<-done
			t.Fatalf("round %d: Serve still running 5 s after Shutdown returned", i)
		}
	}
}

func shutdownTenants(t *testing.T) []Tenant {
	return defaultTenants(t, "127.0.0.1:1", "http://127.0.0.1:1", "", nil)
}
