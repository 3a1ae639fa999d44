package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsEcho is a real WebSocket upstream (coder/websocket) that echoes
// messages and records what reached it.
type wsEcho struct {
	*httptest.Server
	upgrades atomic.Int32
	user     atomic.Value // X-Safeclose-User of the last upgrade
	hdrConn  atomic.Value // Connection header it saw
	closed   atomic.Int32 // close status of the last connection to end (-1: none given)
}

func newWSEcho(t *testing.T) *wsEcho {
	t.Helper()
	e := &wsEcho{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.user.Store(r.Header.Get("X-Safeclose-User"))
		e.hdrConn.Store(r.Header.Get("Connection"))
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		e.upgrades.Add(1)
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				e.closed.Store(int32(websocket.CloseStatus(err)))
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(e.Close)
	return e
}

// wsDial dials the proxy as tenant t1 with key (empty: no credentials).
func wsDial(ctx context.Context, e *testEnv, host, key string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	return websocket.Dial(ctx, "ws://"+e.addr+"/socket", &websocket.DialOptions{HTTPHeader: h, Host: host})
}

func echoOnce(ctx context.Context, t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, b, err := c.Read(ctx)
	if err != nil || string(b) != msg {
		t.Fatalf("Read = %q, %v, want %q", b, err, msg)
	}
}

// Issue 13.1: an authenticated WebSocket upgrade is tunnelled both ways,
// with the identity headers; an unauthenticated one gets 401 and never
// reaches the upstream.
func TestWebSocketAuthAndEcho(t *testing.T) {
	t.Parallel()
	up := newWSEcho(t)
	e := startEnv(t, envConfig{upstream: up.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	for _, key := range []string{"", "wrong"} {
		c, res, err := wsDial(ctx, e, "t1.test", key)
		if err == nil {
			c.CloseNow()
			t.Fatalf("upgrade with key %q succeeded", key)
		}
		if res == nil || res.StatusCode != 401 {
			t.Errorf("upgrade with key %q: response %v, want 401", key, res)
		}
	}
	if n := up.upgrades.Load(); n != 0 || up.user.Load() != nil {
		t.Fatalf("unauthenticated upgrades reached the upstream (%d)", n)
	}

	c, _, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, m := range []string{"hello", "second message", string(make([]byte, 100<<10))} {
		echoOnce(ctx, t, c, m)
	}
	if u := up.user.Load(); u != "alice" {
		t.Errorf("upstream saw X-Safeclose-User %v, want alice", u)
	}
	if h := up.hdrConn.Load(); h != "Upgrade" {
		t.Errorf("upstream saw Connection %q, want exactly Upgrade", h)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("clean close: %v", err)
	}
	eventually(t, "tunnel released", func() bool { return e.srv.table.Load().tenants["t1"].ws.count() == 0 })
}

// Issue 13.1: the per-tenant cap answers 503 when full; a closed tunnel
// frees its slot.
func TestWebSocketCap(t *testing.T) {
	t.Parallel()
	up := newWSEcho(t)
	e := startEnv(t, envConfig{upstream: up.URL, options: func(o *Options) { o.MaxWebSockets = 2 }})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var open []*websocket.Conn
	for range 2 {
		c, _, err := wsDial(ctx, e, "t1.test", "alice-key")
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.CloseNow()
		echoOnce(ctx, t, c, "x")
		open = append(open, c)
	}
	c, res, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err == nil {
		c.CloseNow()
		t.Fatal("third tunnel accepted over a cap of 2")
	}
	if res == nil || res.StatusCode != 503 {
		t.Fatalf("over the cap: %v, want 503", res)
	}
	// Other tenants have their own cap.
	c2, _, err := wsDial(ctx, e, "t2.test", "carol-key")
	if err != nil {
		t.Fatalf("t2 Dial: %v", err)
	}
	c2.CloseNow()
	open[0].Close(websocket.StatusNormalClosure, "")
	eventually(t, "slot freed", func() bool { return e.srv.table.Load().tenants["t1"].ws.count() < 2 })
	c, _, err = wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("Dial after a close: %v", err)
	}
	c.CloseNow()
}

// Issue 13.1: Shutdown closes open tunnels (and does not wait on them);
// idle tunnels are closed after the idle timeout.
func TestWebSocketShutdownAndIdle(t *testing.T) {
	t.Parallel()
	up := newWSEcho(t)
	e := startEnv(t, envConfig{upstream: up.URL, options: func(o *Options) { o.WebSocketIdleTimeout = 300 * time.Millisecond }})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	idle, _, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer idle.CloseNow()
	if _, _, err := idle.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle tunnel Read = %v, want closed by the idle timeout", err)
	}

	c, _, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.CloseNow()
	echoOnce(ctx, t, c, "before shutdown")
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				readErr <- err
				return
			}
		}
	}()
	// Keep the tunnel busy so only the shutdown can close it.
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = c.Write(ctx, websocket.MessageText, []byte("ping"))
			}
		}
	}()
	defer close(stop)
	time.Sleep(400 * time.Millisecond) // longer than the idle timeout
	e.stop()
	select {
	case err := <-readErr:
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("tunnel not closed by Shutdown")
		}
	case <-ctx.Done():
		t.Fatal("tunnel still open after Shutdown")
	}
}

// Issue 13.1: a reload that removes a tenant closes its tunnels; a tenant
// that stays keeps them.
func TestWebSocketReloadRemovesTenant(t *testing.T) {
	t.Parallel()
	up := newWSEcho(t)
	e := startEnv(t, envConfig{upstream: up.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c1, _, err := wsDial(ctx, e, "t1.test", "alice-key")
	if err != nil {
		t.Fatalf("t1 Dial: %v", err)
	}
	defer c1.CloseNow()
	c2, _, err := wsDial(ctx, e, "t2.test", "carol-key")
	if err != nil {
		t.Fatalf("t2 Dial: %v", err)
	}
	defer c2.CloseNow()
	old := e.srv.table.Load()
	if err := e.srv.Reload([]Tenant{old.tenants["t2"].Tenant}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c1.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("removed tenant's tunnel Read = %v, want closed", err)
	}
	echoOnce(ctx, t, c2, "still here")
}

// Issue 13.1: when Safeclose ends a tunnel, on shutdown or because a reload
// removed its tenant, the client and the upstream both get a close frame
// with 1001 (going away), not an abnormal closure (1006), even while the
// client is sending.
func TestWebSocketGoingAway(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"shutdown", "reload"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			up := newWSEcho(t)
			e := startEnv(t, envConfig{upstream: up.URL})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, _, err := wsDial(ctx, e, "t1.test", "alice-key")
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.CloseNow()
			echoOnce(ctx, t, c, "hello")
			readErr := make(chan error, 1)
			go func() {
				for {
					if _, _, err := c.Read(ctx); err != nil {
						readErr <- err
						return
					}
				}
			}()
			stop := make(chan struct{})
			defer close(stop)
			go func() { // keep both directions busy
				for i := 0; i < 200; i++ {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					if c.Write(ctx, websocket.MessageText, []byte("ping")) != nil {
						return
					}
				}
			}()
			time.Sleep(100 * time.Millisecond)
			if how == "shutdown" {
				e.stop()
			} else if err := e.srv.Reload([]Tenant{e.srv.table.Load().tenants["t2"].Tenant}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-readErr:
				if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
					t.Errorf("client Read after %s = %v (status %d), want close status 1001", how, err, st)
				}
			case <-ctx.Done():
				t.Fatalf("tunnel still open after %s", how)
			}
			eventually(t, "the upstream sees the tunnel end", func() bool { return up.closed.Load() != 0 })
			if st := websocket.StatusCode(up.closed.Load()); st != websocket.StatusGoingAway {
				t.Errorf("upstream saw close status %d after %s, want 1001", st, how)
			}
		})
	}
}

// wsAcceptMatches: RFC 6455's own example, and what must not match.
func TestWSAcceptMatches(t *testing.T) {
	t.Parallel()
	key, accept := []byte("dGhlIHNhbXBsZSBub25jZQ=="), []byte("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
	if !wsAcceptMatches(key, accept) || !wsAcceptMatches(key, []byte(" s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ")) {
		t.Error("RFC 6455 §1.3's example key and accept do not match")
	}
	for _, c := range [][2]string{{"", ""}, {"", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, {"dGhlIHNhbXBsZSBub25jZQ==", ""},
		{"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo"}, {"other", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}} {
		if wsAcceptMatches([]byte(c[0]), []byte(c[1])) {
			t.Errorf("wsAcceptMatches(%q, %q) = true", c[0], c[1])
		}
	}
}
