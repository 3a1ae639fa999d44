package hostabi_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/testguest"
)

// Test guests are built from source in testdata/guests (and the example
// plugins from ../plugins/examples) by internal/testguest, which caches each
// build by its sources' hash for every package's tests and later runs, so
// the tests always run the code in the tree. Compiled modules go to the
// shared wazero compilation cache for the same reason.
var (
	guestPaths   = map[string]string{}
	guestErrs    = map[string]error{}
	cacheDir     string
	guestNames   = []string{"allow", "probe", "oob", "panic", "loop", "oom", "noexport", "badresult", "initloop", "event", "deeprec", "kv", "sdkallocs", "leak", "spin"}
	exampleNames = []string{"jwtauth", "apikey", "pathrule", "webhookfilter"}
	// AssemblyScript guests (plugins/sdk-as), by name: the ports of allow,
	// loop, oom and of the four examples. Tests that use them skip when npm
	// is missing, unless CI=true.
	asGuests = map[string]string{
		"allow-as":         "hostabi/testdata/guests-as/allow.ts",
		"loop-as":          "hostabi/testdata/guests-as/loop.ts",
		"oom-as":           "hostabi/testdata/guests-as/oom.ts",
		"probe-as":         "hostabi/testdata/guests-as/probe.ts",
		"event-as":         "hostabi/testdata/guests-as/event.ts",
		"jwtauth-as":       "plugins/examples-as/jwtauth/main.ts",
		"apikey-as":        "plugins/examples-as/apikey/main.ts",
		"pathrule-as":      "plugins/examples-as/pathrule/main.ts",
		"webhookfilter-as": "plugins/examples-as/webhookfilter/main.ts",
	}
)

func TestMain(m *testing.M) {
	dir, err := testguest.Dir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = filepath.Join(dir, "wazero")
	var wg sync.WaitGroup
	var mu sync.Mutex
	build := func(name, pkg string) {
		defer wg.Done()
		path, err := testguest.Build(pkg)
		mu.Lock()
		guestPaths[name], guestErrs[name] = path, err
		mu.Unlock()
	}
	for _, n := range guestNames {
		wg.Add(1)
		go build(n, "hostabi/testdata/guests/"+n)
	}
	for _, n := range exampleNames {
		wg.Add(1)
		go build(n, "plugins/examples/"+n)
	}
	for n, entry := range asGuests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, err := testguest.BuildAS(entry)
			mu.Lock()
			guestPaths[n], guestErrs[n] = path, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	os.Exit(m.Run())
}

func wasm(t testing.TB, name string) []byte {
	t.Helper()
	if err := guestErrs[name]; err != nil {
		if errors.Is(err, testguest.ErrNoNPM) && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	b, err := os.ReadFile(guestPaths[name])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEngine(t testing.TB) *hostabi.Engine {
	t.Helper()
	e, err := hostabi.NewEngine(context.Background(), hostabi.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func load(t testing.TB, e *hostabi.Engine, name string, o hostabi.PluginOptions) *hostabi.Plugin {
	t.Helper()
	if o.Tenant == "" {
		o.Tenant = "t1"
	}
	o.Name = name
	o.Wasm = wasm(t, name)
	if o.PoolSize == 0 {
		o.PoolSize = 2
	}
	if o.Timeout == 0 {
		// Generous: these tests check behaviour, not deadlines, and run
		// under -race on 2 busy cores. Deadline tests set their own.
		o.Timeout = 5 * time.Second
	}
	p, err := e.Load(context.Background(), o)
	if err != nil {
		t.Fatalf("Load(%s) = %v", name, err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// req is a Request for tests.
type req struct {
	method, uri, source string
	headers             [][2]string
	body                string
}

func (r *req) Method() []byte {
	if r.method == "" {
		return []byte("GET")
	}
	return []byte(r.method)
}

func (r *req) URI() []byte {
	if r.uri == "" {
		return []byte("/")
	}
	return []byte(r.uri)
}

func (r *req) VisitHeaders(fn func(name, value []byte)) {
	for _, h := range r.headers {
		fn([]byte(h[0]), []byte(h[1]))
	}
}

func (r *req) SourceAddr() []byte {
	if r.source == "" {
		return []byte("127.0.0.1:40000")
	}
	return []byte(r.source)
}

func (r *req) Body() []byte { return []byte(r.body) }

func hdr(kv ...string) [][2]string {
	var h [][2]string
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, [2]string{kv[i], kv[i+1]})
	}
	return h
}

func claims(d hostabi.Decision) map[string]string {
	m := map[string]string{}
	for _, c := range d.Claims {
		m[c.Name] = c.Value
	}
	return m
}
