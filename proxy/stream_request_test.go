package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// bodyUpstream is a real fasthttp upstream that streams request bodies
// itself (so it never holds one whole) and records, per request, whether
// the body arrived complete, its sha256, and the process heap in use right
// after reading it (after a GC: what is still live).
type bodyUpstream struct {
	url                 string
	complete, broken    atomic.Int32
	lastSum             atomic.Value // hex sha256 of the last complete body
	lastLen, heapInBody atomic.Int64
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{StreamRequestBody: true, MaxRequestBodySize: 64 << 10, Handler: func(ctx *fasthttp.RequestCtx) {
		h := sha256.New()
		var n int64
		var err error
		if bs := ctx.RequestBodyStream(); bs != nil {
			n, err = io.Copy(h, bs)
		} else {
			w, _ := h.Write(ctx.PostBody())
			n = int64(w)
		}
		if err != nil {
			u.broken.Add(1)
			ctx.SetConnectionClose()
			return
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		u.heapInBody.Store(int64(ms.HeapInuse))
		u.lastSum.Store(hex.EncodeToString(h.Sum(nil)))
		u.lastLen.Store(n)
		u.complete.Add(1)
		ctx.SetBodyString("got " + fmt.Sprint(n))
	}}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	u.url = "http://" + ln.Addr().String()
	return u
}

// heapInuse is the heap in use after a GC.
func heapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// Issue 13.2: a large request body streams to the upstream: 64 MiB arrive
// intact (sha256) while the heap in use grows by far less than the body
// (measured when the upstream has read all of it, so a proxy that buffered
// the body would still hold it). Not parallel: the heap is the process's.
func TestStreamLargeUpload(t *testing.T) {
	const size = 64 << 20
	up := newBodyUpstream(t)
	e := startEnv(t, envConfig{upstream: up.url, maxBody: 128 << 20})

	h := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), h)
	req, err := http.NewRequestWithContext(t.Context(), "POST", e.base+"/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Host = "t1.test"
	req.Header.Set("Authorization", "Bearer alice-key")
	before := heapInuse()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != fmt.Sprint("got ", size) {
		t.Fatalf("upload = %d %q", res.StatusCode, b)
	}
	if got, want := up.lastSum.Load(), hex.EncodeToString(h.Sum(nil)); got != want || up.lastLen.Load() != size {
		t.Errorf("upstream got %d bytes, sha256 %v; want %d, %s", up.lastLen.Load(), got, size, want)
	}
	if d := up.heapInBody.Load() - before; d >= 16<<20 {
		t.Errorf("heap in use grew by %d MiB during a %d MiB upload; want < 16 MiB (the body must stream)", d>>20, size>>20)
	}
}

// rawChunkedUpload sends a chunked upload of n bytes (64 KiB chunks) to
// the proxy on a raw connection and returns the response.
func rawChunkedUpload(t *testing.T, e *testEnv, method string, n int) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		w := bufio.NewWriter(c)
		fmt.Fprintf(w, "%s /upload HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\nTransfer-Encoding: chunked\r\n\r\n", method)
		chunk := strings.Repeat("z", 64<<10)
		for left := n; left > 0; left -= len(chunk) {
			if left < len(chunk) {
				chunk = chunk[:left]
			}
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		io.WriteString(w, "0\r\n\r\n")
		w.Flush() // errors: the proxy may stop reading early
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// Issue 13.2: a chunked upload over max_body_bytes is refused with 413 (no
// answer had started) and the upstream, which saw the body start streaming,
// never gets it as a complete request: its connection is cut before the end.
func TestStreamChunkedOverCap(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	e := startEnv(t, envConfig{upstream: up.url, maxBody: 1 << 20})

	res := rawChunkedUpload(t, e, "POST", 1<<20+128<<10)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 413 || !strings.Contains(string(b), `"code":"body_too_large"`) {
		t.Errorf("over-cap chunked upload = %d %s, want 413 body_too_large", res.StatusCode, b)
	}
	eventually(t, "the upstream sees the body break", func() bool { return up.broken.Load() == 1 })
	if n := up.complete.Load(); n != 0 {
		t.Errorf("the upstream got %d complete requests from an over-cap upload", n)
	}

	// Under the cap, a chunked upload passes whole.
	res = rawChunkedUpload(t, e, "POST", 1<<20)
	b, _ = io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != fmt.Sprint("got ", 1<<20) {
		t.Errorf("chunked upload at the cap = %d %s", res.StatusCode, b)
	}
}

// Issue 13.2: a declared Content-Length over max_body_bytes is refused
// before the body is read.
func TestProxiedBodyLimitDeclared(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	e := startEnv(t, envConfig{upstream: up.url, maxBody: 1 << 10})
	r := e.do("POST", "t1.test", "/upload", "alice-key", []byte(strings.Repeat("a", 2<<10)))
	if r.status != 413 || r.errCode(t) != "body_too_large" {
		t.Errorf("2 KiB body over a 1 KiB cap = %d %s, want 413", r.status, r.body)
	}
	if r := e.do("POST", "t1.test", "/upload", "alice-key", []byte(strings.Repeat("a", 1<<10))); r.status != 200 {
		t.Errorf("body at the cap = %d %s", r.status, r.body)
	}
	if n := up.complete.Load(); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

// hangUp accepts connections, reads a little and closes them: a pooled
// upstream that drops requests before answering.
func hangUp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for range 100 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 512))
			c.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

// Issue 13.2: a streamed request body is never sent twice: a PUT (an
// idempotent method) whose first target hangs up is answered 502 and never
// reaches the second target; the same PUT without a body is retried there.
func TestUpstreamRetryNeverStreamedBody(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
		tn.Upstreams = []string{hangUp(t), up.url}
	}), maxBody: 1 << 20})
	p := e.srv.table.Load().tenants["t1"].upstream
	p.next.Store(0) // the next pick is the target that hangs up
	res := rawChunkedUpload(t, e, "PUT", 256<<10)
	if res.StatusCode != 502 {
		t.Errorf("streamed PUT to a target that hangs up = %d, want 502", res.StatusCode)
	}
	if n := up.complete.Load() + up.broken.Load(); n != 0 {
		t.Errorf("the streamed PUT reached the second target %d times", n)
	}
	p.targets[0].mu.Lock()
	p.targets[0].until = time.Time{}
	p.targets[0].mu.Unlock()
	p.next.Store(0)
	if r := e.do("PUT", "t1.test", "/x", "alice-key", nil); r.status != 200 {
		t.Errorf("PUT without a body = %d %s, want 200 (retried on the second target)", r.status, r.body)
	}
}

// Issue 13.2: deciding whether a request may be retried never reads a
// streamed body (Request.Body would buffer all of it).
func TestUpstreamIdempotentDoesNotReadStream(t *testing.T) {
	t.Parallel()
	var req fasthttp.Request
	req.Header.SetMethod("PUT")
	r := &countingReader{r: strings.NewReader("body")}
	req.SetBodyStream(r, -1)
	if idempotent(&req) {
		t.Error("idempotent(PUT with a streamed body) = true, want false")
	}
	if r.n != 0 {
		t.Errorf("idempotent read %d bytes of the stream", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// bodyAuth is an Authenticator that reads the body (as an auth plugin with
// the body capability may): it allows requests whose body starts with
// "allow".
type bodyAuth struct{ seen atomic.Int64 }

func (a *bodyAuth) ReadsBody() bool { return true }

func (a *bodyAuth) Authenticate(_ context.Context, ctx *fasthttp.RequestCtx) (Identity, error) {
	b := ctx.PostBody()
	a.seen.Store(int64(len(b)))
	if !strings.HasPrefix(string(b), "allow") {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Subject: "reader"}, nil
}

// Issue 13.2: a tenant whose authenticator reads the body gets it whole
// (buffered, at most min(max_body_bytes, 16 MiB)), and the upstream gets
// the same bytes.
func TestStreamBufferedForBodyReadingAuth(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	auth := &bodyAuth{}
	e := startEnv(t, envConfig{tenantsFn: tenantsWith(t, func(tn *Tenant) {
		tn.Upstream, tn.Auth = up.url, auth
	}), maxBody: 1 << 20})
	body := "allow" + strings.Repeat("b", 200<<10)
	if r := e.do("POST", "t1.test", "/x", "", []byte(body)); r.status != 200 {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	if auth.seen.Load() != int64(len(body)) {
		t.Errorf("authenticator saw %d body bytes, want %d", auth.seen.Load(), len(body))
	}
	sum := sha256.Sum256([]byte(body))
	if up.lastSum.Load() != hex.EncodeToString(sum[:]) {
		t.Error("upstream body differs from the client's")
	}
	res := rawChunkedUpload(t, e, "POST", 1<<20+1)
	if res.StatusCode != 413 {
		t.Errorf("over-cap chunked body for a body-reading authenticator = %d, want 413", res.StatusCode)
	}
}
