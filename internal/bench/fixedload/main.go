// Command fixedload sends a fixed number of keep-alive GET requests over a
// fixed number of connections and fails if any is not answered 200. Unlike
// wrk, which runs for a duration, it does the same work every time, for
// counting instructions per request (internal/bench/instructions.sh).
//
//	fixedload -addr 127.0.0.1:8080 -host t1.test -token T -n 20000 -c 8
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "", "host:port to connect to")
	host := flag.String("host", "127.0.0.1", "Host header")
	token := flag.String("token", "", "bearer token (Authorization header), if any")
	n := flag.Int64("n", 1000, "requests in all")
	conns := flag.Int("c", 8, "connections (one sender each)")
	flag.Parse()
	if *addr == "" || *n < 1 || *conns < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if bad, first := run(*addr, *host, *token, *n, *conns); bad > 0 {
		fmt.Fprintf(os.Stderr, "fixedload: %d of %d requests failed; first: %v\n", bad, *n, first)
		os.Exit(1)
	}
}

// run sends n GET requests to addr over conns keep-alive connections and
// returns how many failed (an error, or a status other than 200) and the
// first failure.
func run(addr, host, token string, n int64, conns int) (failed int64, first error) {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns}
	var left, bad atomic.Int64
	left.Store(n)
	var once sync.Once
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			for left.Add(-1) >= 0 {
				req.Reset()
				req.SetRequestURI("http://" + host + "/")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				err := hc.Do(req, res)
				if err == nil && res.StatusCode() != 200 {
					err = fmt.Errorf("status %d", res.StatusCode())
				}
				if err != nil {
					bad.Add(1)
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return bad.Load(), first
}
