package proxy

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
)

// Issue 13.2: a sized (Content-Length) response streams: 200 MiB pass
// intact while the heap in use, measured half-way through the client's
// read, grows by far less than the body (a buffering proxy holds all of it
// before the first byte goes out). Not parallel: the heap is the process's.
func TestStreamSizedResponse(t *testing.T) {
	const size = 200 << 20
	body := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{2}), size) }
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, body())
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL, options: func(o *Options) { o.MaxResponseBytes = 256 << 20 }})

	before := heapInuse()
	res := e.get(t.Context(), "/download")
	defer res.Body.Close()
	if res.StatusCode != 200 || res.ContentLength != size {
		t.Fatalf("GET = %d, Content-Length %d", res.StatusCode, res.ContentLength)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, res.Body, size/2); err != nil {
		t.Fatalf("first half: %v", err)
	}
	mid := heapInuse()
	n, err := io.Copy(h, res.Body)
	if err != nil || n != size/2 {
		t.Fatalf("second half: %d bytes, %v", n, err)
	}
	want := sha256.New()
	io.Copy(want, body())
	if string(h.Sum(nil)) != string(want.Sum(nil)) {
		t.Error("the client's body differs from the upstream's")
	}
	if d := mid - before; d >= 16<<20 {
		t.Errorf("heap in use grew by %d MiB half-way through a %d MiB response; want < 16 MiB (it must stream)", d>>20, size>>20)
	}
}

// Issue 13.2: streamed sized responses hand their upstream connection back
// once read to the end (HEAD included), and an upstream that dies inside a
// sized body gives the client a truncated body, never a complete one.
func TestStreamSizedResponseConnections(t *testing.T) {
	t.Parallel()
	const size = 256 << 10 // over maxBufferedResponse: streamed
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		if r.Method == "HEAD" {
			return
		}
		chunk := make([]byte, size/2)
		w.Write(chunk)
		if r.URL.Path == "/dies" {
			w.(http.Flusher).Flush()
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		w.Write(chunk)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	for i := range 10 {
		if r := e.do("GET", "t1.test", "/big", "alice-key", nil); r.status != 200 || len(r.body) != size {
			t.Fatalf("GET %d = %d, %d bytes", i, r.status, len(r.body))
		}
	}
	if r := e.do("HEAD", "t1.test", "/big", "alice-key", nil); r.status != 200 || r.hdr.Get("Content-Length") != strconv.Itoa(size) {
		t.Errorf("HEAD = %d, Content-Length %q", r.status, r.hdr.Get("Content-Length"))
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("11 sequential streamed responses opened %d upstream connections, want reuse", n)
	}

	res := e.get(t.Context(), "/dies")
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil || n >= size {
		t.Errorf("upstream dying mid-body: client read %d bytes, err %v; want fewer than %d and an error", n, err, size)
	}
}
