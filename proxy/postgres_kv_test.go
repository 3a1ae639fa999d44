package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/testguest"
	"github.com/safeclose/safeclose/store"
	"github.com/safeclose/safeclose/store/pg/pgtest"
)

// claimsUpstream answers with the claims Safeclose forwarded, by name.
func claimsUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := map[string]string{}
		for name := range r.Header {
			if c, ok := strings.CutPrefix(name, HeaderClaimPrefix); ok {
				m[strings.ToLower(c)] = r.Header.Get(name)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(up.Close)
	return up
}

// kvInstance starts one proxy on the PostgreSQL at dsn whose tenant "kv"
// authenticates with the kv test guest, its plugin engine holding KV data
// in that store (as serve wires it).
func kvInstance(t *testing.T, dsn string) *testEnv {
	t.Helper()
	db := pgStore(dsn)(t, nil)
	eng, err := hostabi.NewEngine(context.Background(), hostabi.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CacheDir: testguest.CompilationCacheDir(t),
		KV: db.(hostabi.KVStore),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	p, err := eng.Load(context.Background(), hostabi.PluginOptions{
		Tenant: "kv", Name: "kv", Kind: hostabi.KindAuth, Wasm: guestWasm(t, "kv"), Caps: hostabi.Capabilities{KV: true},
		PoolSize: 2, Timeout: 5 * time.Second, MemoryLimitPages: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	up := claimsUpstream(t)
	return startEnv(t, envConfig{
		store:     func(testing.TB, *store.Keyring) Store { return db },
		tenantsFn: func(_, plaidURL string) []Tenant { return []Tenant{pluginTenant("kv", p, up.URL, plaidURL)} },
	})
}

func kvDo(t *testing.T, e *testEnv, op, key, val string) (int, map[string]string) {
	t.Helper()
	r := e.do("GET", "kv.test", "/app", "", nil, "X-Op", op, "X-Key", key, "X-Val", val)
	m := map[string]string{}
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("%s %s: %v (%s)", op, key, err, r.body)
		}
	}
	return r.status, m
}

// Issue 11.1: the plugin KV store is durable and shared: a Wasm guest
// writes through one proxy instance and reads through another on the same
// PostgreSQL, and a restarted instance still sees it.
func TestPostgresPluginKVSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	a, b := kvInstance(t, dsn), kvInstance(t, dsn)
	if st, c := kvDo(t, a, "set", "session:42", "alice"); st != 200 || c["set"] != "ok" {
		t.Fatalf("set through instance A = %d %v", st, c)
	}
	if st, c := kvDo(t, b, "get", "session:42", ""); st != 200 || c["found"] != "true" || c["value"] != "alice" {
		t.Fatalf("get through instance B = %d %v, want alice", st, c)
	}
	if st, c := kvDo(t, b, "del", "session:42", ""); st != 200 || c["del"] != "ok" {
		t.Fatalf("del through instance B = %d %v", st, c)
	}
	if st, c := kvDo(t, a, "strict", "session:42", ""); st != 200 || c["found"] != "false" {
		t.Fatalf("get through instance A after B deleted = %d %v, want not found", st, c)
	}
	kvDo(t, a, "set", "durable", "yes")
	if st, c := kvDo(t, kvInstance(t, dsn), "get", "durable", ""); st != 200 || c["value"] != "yes" {
		t.Fatalf("get through a new instance = %d %v, want yes", st, c)
	}
}

// Issue 11.1: with PostgreSQL down, kv_* tell the guest so (it decides:
// this one denies with 503 on a failed read, reports a failed write), the
// SDK's KVGet fails closed (trap: 503), and all of it recovers by itself.
func TestPostgresPluginKVDown(t *testing.T) {
	c := pgtest.NewCluster(t)
	e := kvInstance(t, c.DSN)
	if st, m := kvDo(t, e, "set", "k", "v"); st != 200 || m["set"] != "ok" {
		t.Fatalf("set = %d %v", st, m)
	}
	c.Stop()
	if st, _ := kvDo(t, e, "get", "k", ""); st != http.StatusServiceUnavailable {
		t.Errorf("get with PostgreSQL down = %d, want the plugin's 503", st)
	}
	if st, m := kvDo(t, e, "set", "k", "v2"); st != 200 || m["set"] != "unavailable" {
		t.Errorf("set with PostgreSQL down = %d %v, want set=unavailable", st, m)
	}
	if st, m := kvDo(t, e, "del", "k", ""); st != 200 || m["del"] != "unavailable" {
		t.Errorf("del with PostgreSQL down = %d %v, want del=unavailable", st, m)
	}
	if st, _ := kvDo(t, e, "strict", "k", ""); st != http.StatusServiceUnavailable {
		t.Errorf("KVGet with PostgreSQL down = %d, want 503 (fail closed)", st)
	}
	c.Start()
	var st int
	var m map[string]string
	for range 30 { // bounded: the pool reconnects on the next call
		if st, m = kvDo(t, e, "get", "k", ""); st == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st != 200 || m["value"] != "v" {
		t.Fatalf("get after PostgreSQL returned = %d %v, want v", st, m)
	}
}
