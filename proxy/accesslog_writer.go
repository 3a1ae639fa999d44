package proxy

import (
	"context"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// The access log (issue 12.3): one JSON line per request, encoded by hand
// into a stack buffer and handed to a bounded asynchronous writer, so a
// request never waits on the log's destination. See RATIONALE.md "Why a
// hand-rolled access log with a bounded writer?".

// DefaultAccessLogBuffer bounds the access log lines waiting to be written.
const DefaultAccessLogBuffer = 1 << 20

// accessLog collects encoded lines in a bounded buffer that one goroutine
// writes out. Add never blocks on the destination: when the buffer is full
// the line is dropped and counted. It is safe for concurrent use.
type accessLog struct {
	w       io.Writer
	max     int
	dropped prometheus.Counter

	mu      sync.Mutex
	pending []byte // whole lines, not yet handed to the writer
	closed  bool

	wake  chan struct{}      // cap 1: pending has lines
	syncs chan chan struct{} // sync: written up to now
	stop  chan struct{}      // close: flush and exit
	done  chan struct{}      // closed when the writer exits
}

// newAccessLog starts the writer goroutine; close stops it.
func newAccessLog(w io.Writer, max int, dropped prometheus.Counter) *accessLog {
	if max <= 0 {
		max = DefaultAccessLogBuffer
	}
	a := &accessLog{
		w: w, max: max, dropped: dropped,
		pending: make([]byte, 0, min(max, 64<<10)),
		wake:    make(chan struct{}, 1),
		syncs:   make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go a.run()
	return a
}

// add queues one line (it must end in '\n'). It copies line and returns at
// once; a line that does not fit in the buffer is dropped and counted.
func (a *accessLog) add(line []byte) {
	a.mu.Lock()
	if a.closed || len(a.pending)+len(line) > a.max {
		a.mu.Unlock()
		a.dropped.Inc()
		return
	}
	a.pending = append(a.pending, line...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default: // the writer is already woken
	}
}

// run writes pending lines, a batch per Write call, until close.
func (a *accessLog) run() {
	defer close(a.done)
	var out []byte // the batch being written; swapped with pending
	for {
		select {
		case <-a.wake:
			out = a.writeBatch(out)
		case reply := <-a.syncs:
			out = a.writeBatch(out)
			close(reply)
		case <-a.stop:
			a.writeBatch(out) // add refuses lines once closed: this is the last
			return
		}
	}
}

// writeBatch takes every pending line and writes them in one call. Write
// errors are not reported: the destination is the process's log stream,
// with nowhere else to report to.
func (a *accessLog) writeBatch(out []byte) []byte {
	a.mu.Lock()
	out, a.pending = a.pending, out[:0]
	a.mu.Unlock()
	if len(out) > 0 {
		_, _ = a.w.Write(out)
	}
	if cap(out) > 4*DefaultAccessLogBuffer { // after a burst, do not keep a huge buffer
		out = nil
	}
	return out
}

// sync waits until every line added before it was written (for tests and
// callers that read the destination).
func (a *accessLog) sync() {
	reply := make(chan struct{})
	select {
	case a.syncs <- reply:
		<-reply
	case <-a.done:
	}
}

// close refuses new lines, writes the pending ones and stops the writer,
// waiting at most until ctx ends (a destination that blocks forever must not
// hold up shutdown).
func (a *accessLog) close(ctx context.Context) error {
	a.mu.Lock()
	already := a.closed
	a.closed = true
	a.mu.Unlock()
	if !already {
		close(a.stop)
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// accessRecord is one access log line's fields.
type accessRecord struct {
	time      time.Time
	requestID []byte
	tenant    string
	user      []byte
	method    []byte
	path      []byte
	route     string
	status    int
	bytes     int
	duration  time.Duration
	upstream  string
	client    netip.Addr // the peer (behind a PROXY protocol balancer, the client it names)
}

// appendAccessLine appends r as one JSON object and a newline, with the same
// fields slog's JSON handler wrote before (time, level, msg, component,
// then the request's). Strings are escaped as JSON requires; bytes that are
// not UTF-8 become U+FFFD, as encoding/json does.
func appendAccessLine(b []byte, r *accessRecord) []byte {
	b = append(b, `{"time":"`...)
	b = r.time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","component":"access","request_id":`...)
	b = appendJSONString(b, r.requestID)
	b = append(b, `,"tenant":`...)
	b = appendJSONString(b, r.tenant)
	b = append(b, `,"user":`...)
	b = appendJSONString(b, r.user)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.path)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, r.route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(r.bytes), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(r.duration.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"upstream":`...)
	b = appendJSONString(b, r.upstream)
	b = append(b, `,"client":"`...)
	if r.client.IsValid() {
		b = r.client.AppendTo(b)
	}
	return append(b, "\"}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string: '"', '\\' and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped (as encoding/json does) so the line is also safe JavaScript.
func appendJSONString[S []byte | string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
