package hostabi_test

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
)

func TestZZScratch(t *testing.T) {
	runtime.MemProfileRate = 4096
	e := newEngine(t)
	o := hostabi.PluginOptions{Timeout: 5 * time.Second,
		Caps:    hostabi.Capabilities{Config: true, Log: true, Crypto: true, KV: true},
		Secrets: map[string][]byte{"main": []byte("tenant-jwt-secret-0123456789abcd")}, PoolSize: 9}
	p := load(t, e, "jwtauth", o)
	runtime.GC()
	f, _ := os.Create("/tmp/mem2.prof")
	pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	_ = p
}
