package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// get sends GET path to tenant t1 as alice and returns the live response.
func (e *testEnv) get(ctx context.Context, path string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = "t1.test"
	req.Header.Set("Authorization", "Bearer alice-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return res
}

// Issue 13.2: server-sent events reach the client as the upstream writes
// them. The upstream writes event 1 and waits for the test to have read it
// before writing event 2; a buffering proxy deadlocks that (the upstream
// gives up waiting after 5 s and the test fails).
func TestSSEStreamsEventByEvent(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	var starved atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-time.After(5 * time.Second):
			starved.Store(true)
		}
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "data: two\n\n")
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res := e.get(ctx, "/events")
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(res.Body)
	event := func() string {
		var b strings.Builder
		for range 10 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading event: %v (after %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
		t.Fatalf("event too long: %q", b.String())
		return ""
	}
	if ev := event(); ev != "data: one\n" {
		t.Fatalf("first event = %q", ev)
	}
	if starved.Load() {
		t.Fatal("the first event reached the client only after the upstream gave up waiting: the response was buffered")
	}
	close(next)
	if ev := event(); ev != "data: two\n" {
		t.Fatalf("second event = %q", ev)
	}
}

// Issue 13.2: a streamed (chunked) response over max_response_bytes is cut
// at the cap: the client gets exactly the cap and then an error (no final
// chunk). A response whose Content-Length is over the cap is 502.
func TestResponseSizeCap(t *testing.T) {
	t.Parallel()
	const capBytes = 1 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", strconv.Itoa(2*capBytes))
		}
		for range 2 * capBytes / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	e := startEnv(t, envConfig{upstream: up.URL, options: func(o *Options) { o.MaxResponseBytes = capBytes }})

	r := e.do("GET", "t1.test", "/sized", "alice-key", nil)
	if r.status != 502 || r.errCode(t) != "upstream_response_too_large" {
		t.Errorf("Content-Length over the cap = %d %s, want 502 upstream_response_too_large", r.status, r.body)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res := e.get(ctx, "/streamed")
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil || n != capBytes {
		t.Errorf("streamed over the cap: read %d bytes, err %v; want %d bytes then an error", n, err, capBytes)
	}

	// Under the cap, both kinds pass whole.
	small := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("y"), capBytes/2))
	}))
	t.Cleanup(small.Close)
	e2 := startEnv(t, envConfig{upstream: small.URL, options: func(o *Options) { o.MaxResponseBytes = capBytes }})
	if r := e2.do("GET", "t1.test", "/", "alice-key", nil); r.status != 200 || len(r.body) != capBytes/2 {
		t.Errorf("under the cap = %d, %d bytes", r.status, len(r.body))
	}
}
