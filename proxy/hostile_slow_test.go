package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Issue 9.2 (second trust pass): a slowloris upload on the streamed path
// (and on an own route, whose body is read whole). ReadTimeout is renewed
// before each read of the body, so a client trickling one byte per interval
// under ReadTimeout could hold a worker and a pooled upstream connection
// for MaxBodyBytes intervals. It holds: fasthttp's body reader fills its
// buffer before returning, so a read needs kilobytes, not a byte, within
// ReadTimeout; the trickle is cut (400) after about one ReadTimeout.
func TestHostileSlowlorisUpload(t *testing.T) {
	_, url := newSeenUpstream(t)
	e := startEnv(t, envConfig{upstream: url, optsFn: func(o *Options) {
		o.ReadTimeout = 300 * time.Millisecond
	}})
	for _, path := range []string{"/upload", pathExchange} { // streamed, and read whole for an own route
		t.Run(path, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const size = 1 << 20
			head := "POST " + path + " HTTP/1.1\r\nHost: t1.test\r\nAuthorization: Bearer alice-key\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			// One byte every 100 ms: each read well within ReadTimeout. A
			// bounded loop: 100 bytes is 10 s, far past the 300 ms window.
			sent, cut := 0, false
			for range 100 {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte{'x'}); err != nil {
					cut = true
					break
				}
				sent++
				time.Sleep(100 * time.Millisecond)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if !cut && err != nil {
				t.Fatalf("after %d trickled bytes the proxy neither answered nor hung up: %v", sent, err)
			}
			if err == nil {
				res.Body.Close()
				if res.StatusCode < 400 {
					t.Fatalf("a trickled upload got %d", res.StatusCode)
				}
			}
			t.Logf("sent %d, cut %v, answer %v %v", sent, cut, res, err)
			if sent >= 100 {
				t.Fatalf("the proxy accepted a 1 B/100 ms upload for %d bytes", sent)
			}
		})
	}
}
