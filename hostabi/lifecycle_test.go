package hostabi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

// waitInstances waits (bounded: 60 s) until p holds n instances again.
func waitInstances(t *testing.T, p *hostabi.Plugin, n uint64) {
	t.Helper()
	for i := 0; p.Stats().Instances < n; i++ {
		if i == 6000 {
			t.Fatalf("pool never refilled to %d: %+v", n, p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A guest that keeps a little more memory on every call reaches its memory
// cap after a fixed number of calls; its instance traps, is discarded and a
// fresh one serves. Every instance of a pool is used in turn, so they all
// fill up at about the same call: more traps in a row than PenaltyAfter.
// The box opens; once the fresh instances are in, the first probe must
// succeed, not run on the next worn-out instance and reopen the box for
// twice as long, once per worn-out instance left (1+2+4+8+16+30+… s of 503s
// for a tenant whose plugin works on every fresh instance).
func TestLeakingGuestRecoversAfterOneWindow(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	const pool = 8
	p := load(t, e, "leak", hostabi.PluginOptions{PoolSize: pool, MemoryLimitPages: 256})
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	hostabi.SetPenaltyClock(p, clk.Now)
	r := &req{}
	var traps, probes int
	for i := 0; ; i++ {
		if i == 20000 {
			t.Fatalf("no instance reached its memory cap in %d calls: %+v", i, p.Stats())
		}
		_, err := p.Authenticate(context.Background(), r)
		if err == nil {
			if traps > 0 && !p.Stats().InPenaltyBox {
				break
			}
			continue
		}
		switch {
		case isTrap(err):
			traps++
		case errors.Is(err, hostabi.ErrPenalty):
			// Let the discarded instances be replaced, then end the window.
			waitInstances(t, p, pool)
			clk.Add(time.Minute)
			probes++
			if probes > 1 {
				t.Errorf("probe %d: the box reopened after its first window", probes)
			}
		default:
			t.Fatalf("call %d = %v, want nil, a trap or ErrPenalty", i, err)
		}
	}
	s := p.Stats()
	t.Logf("traps %d, probes %d, stats %+v", traps, probes, s)
}

// Hundreds of reloads of a plugin (Load the new one, Close the old one, on
// one long-lived Engine, as serve does) release everything: wazero's
// compiled code of each module is freed once no plugin uses it, also for a
// load refused after compiling (here: its _initialize fails), and no
// goroutine is left behind.
func TestReloadsReleaseCompiledModules(t *testing.T) {
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	ok, bad := wasm(t, "allow"), wasm(t, "initloop")
	g0 := runtime.NumGoroutine()
	const reloads = 100
	var cur *hostabi.Plugin
	for i := range reloads {
		p, err := e.Load(context.Background(), hostabi.PluginOptions{
			Tenant: "t1", Name: "allow", Wasm: ok, PoolSize: 1, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatalf("reload %d: Load = %v", i, err)
		}
		if cur != nil {
			cur.Close(context.Background())
		}
		cur = p
		if d, err := cur.Authenticate(context.Background(), &req{headers: hdr("X-User", "u")}); err != nil || !d.Allow {
			t.Fatalf("reload %d: Authenticate = %+v, %v", i, d, err)
		}
	}
	if n := hostabi.CompiledModules(t, e); n > 3 {
		t.Errorf("with one plugin open after %d reloads, the engine holds %d compiled modules, want <= 3 (guest, wasi, host module)", reloads, n)
	}
	cur.Close(context.Background())
	if n := hostabi.CompiledModules(t, e); n != 0 {
		t.Errorf("after closing every plugin, the engine holds %d compiled modules, want 0", n)
	}
	// A refused load (its _initialize loops until the init timeout) leaves
	// nothing either.
	if _, err := e.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "t1", Name: "initloop", Wasm: bad, PoolSize: 1, Timeout: 10 * time.Millisecond,
	}); err == nil {
		t.Fatal("Load(initloop) = nil, want refused")
	}
	if n := hostabi.CompiledModules(t, e); n != 0 {
		t.Errorf("after a refused load, the engine holds %d compiled modules, want 0", n)
	}
	for i := 0; runtime.NumGoroutine() > g0; i++ {
		if i == 500 {
			t.Fatalf("goroutines: %d before the reloads, %d after", g0, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a log destination for tests.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A plugin's penalty box says when it opens and when the plugin is back, so
// an operator does not have to infer recovery from a counter that stops
// rising.
func TestPenaltyBoxOpenAndCloseAreLogged(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{
		CacheDir: cacheDir, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	p := load(t, e, "panic", hostabi.PluginOptions{PoolSize: 1, PenaltyAfter: 2})
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	hostabi.SetPenaltyClock(p, clk.Now)
	for range 2 {
		waitInstances(t, p, 1)
		if _, err := p.Authenticate(context.Background(), &req{headers: hdr("X-Panic", "1")}); !isTrap(err) {
			t.Fatalf("panicking call = %v, want a trap", err)
		}
	}
	if got := logs.String(); !strings.Contains(got, "plugin in its penalty box") || !strings.Contains(got, "window=1s") {
		t.Errorf("log after the box opened:\n%s\nwant a line saying so, with its window", got)
	}
	waitInstances(t, p, 1)
	clk.Add(time.Second)
	if d, err := p.Authenticate(context.Background(), &req{}); err != nil || !d.Allow {
		t.Fatalf("probe = %+v, %v; want allowed", d, err)
	}
	if got := logs.String(); !strings.Contains(got, "plugin out of its penalty box") || !strings.Contains(got, "tenant=t1 plugin=panic") {
		t.Errorf("log after a good probe:\n%s\nwant a line saying the plugin is back, naming it", got)
	}
}
