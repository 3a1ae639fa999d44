package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/testguest"
	"github.com/safeclose/safeclose/store"
)

// Noisy neighbours: one tenant (its plugin code, or a client flooding it)
// must not make another tenant's requests fail. Outcomes are counted, not
// timed: the bounds are the product's own (a plugin's call timeout).

// floodClient is an HTTP client that keeps up to n connections open.
func floodClient(t *testing.T, n int) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// flood sends requests built by req from n goroutines until stop closes.
// ok counts the answers that pass check; wait returns once every goroutine
// has stopped.
func flood(c *http.Client, n int, stop <-chan struct{}, req func(i int64) *http.Request, check func(status int, body []byte) bool) (ok *atomic.Int64, wait func()) {
	var wg sync.WaitGroup
	var seq atomic.Int64
	ok = new(atomic.Int64)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.Do(req(seq.Add(1)))
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if check(res.StatusCode, b) {
					ok.Add(1)
				}
			}
		}()
	}
	return ok, wg.Wait
}

// waitCount waits until c reaches n, for at most 30 s.
func waitCount(t *testing.T, c *atomic.Int64, n int64, what string) {
	t.Helper()
	for range 3000 {
		if c.Load() >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %d, want %d", what, c.Load(), n)
}

// A tenant whose plugin writes its key/value store as fast as it can (here:
// new keys into a namespace at its quota, each refused after a purge scan)
// must not make another tenant's kv_set miss its call timeout. The store
// serialised every tenant's KV writes behind one mutex held across the
// write and its sync, so the quiet tenant waited for the noisy tenant's
// queue of writes and its plugin calls timed out (503).
func TestNoisyKVWritesDoNotStallAnotherTenant(t *testing.T) {
	t.Parallel()
	kr, err := store.ParseKeyring(testKeyring)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := hostabi.NewEngine(context.Background(), hostabi.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CacheDir: testguest.CompilationCacheDir(t), KV: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	load := func(tenant string, pool int, timeout time.Duration) *hostabi.Plugin {
		p, err := eng.Load(context.Background(), hostabi.PluginOptions{
			Tenant: tenant, Name: "kv", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "kv"), Caps: hostabi.Capabilities{KV: true},
			PoolSize: pool, Timeout: timeout, MemoryLimitPages: 256,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(context.Background()) })
		return p
	}
	// The noisy tenant's calls may take 10 s (the most a config allows),
	// so its own writes never time out; the quiet one has the default 100 ms.
	noisy, quiet := load("noisy", hostabi.MaxPoolSize, 10*time.Second), load("quiet", 2, 100*time.Millisecond)
	// The noisy tenant's namespace at its quota, with the largest values.
	big := bytes.Repeat([]byte("v"), 4096)
	for i := range 1024 {
		if ok, err := db.KVSet(t.Context(), "noisy", fmt.Appendf(nil, "k%d", i), big, 0, 1024); err != nil || !ok {
			t.Fatalf("KVSet = %v, %v", ok, err)
		}
	}
	up := claimsUpstream(t)
	e := startEnv(t, envConfig{
		store: func(testing.TB, *store.Keyring) Store { return db },
		tenantsFn: func(_, plaidURL string) []Tenant {
			return []Tenant{pluginTenant("noisy", noisy, up.URL, plaidURL), pluginTenant("quiet", quiet, up.URL, plaidURL)}
		},
	})

	stop := make(chan struct{})
	const conns = 2 * hostabi.MaxPoolSize
	refused, wait := flood(floodClient(t, conns), conns, stop, func(i int64) *http.Request {
		req, _ := http.NewRequest("GET", e.base+"/app", nil)
		req.Host = "noisy.test"
		req.Header.Set("X-Op", "set")
		req.Header.Set("X-Key", fmt.Sprintf("new%d", i))
		req.Header.Set("X-Val", "x")
		return req
	}, func(status int, body []byte) bool { return status == 200 && string(body) == `{"set":"rejected"}`+"\n" })
	// Every noisy instance busy, its calls answered (it stays out of its
	// penalty box), its new keys refused at the quota.
	waitCount(t, refused, conns, "noisy kv_set answered rejected")
	const n = 100
	var failed []string
	for i := range n {
		st, body, err := rawGet(e.base, "quiet.test", "X-Op", "set", "X-Key", "q", "X-Val", fmt.Sprint(i))
		var m map[string]string
		if err != nil || st != 200 || json.Unmarshal([]byte(body), &m) != nil || m["set"] != "ok" {
			failed = append(failed, fmt.Sprintf("%d %s %v", st, body, err))
		}
	}
	close(stop)
	wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d kv_set requests of the quiet tenant failed while another tenant wrote its store (%d noisy writes refused); first: %s",
			len(failed), n, refused.Load(), failed[0])
	}
}
