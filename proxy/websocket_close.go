package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// Going away (issue 13): when Safeclose itself ends a tunnel, on shutdown
// or because a reload removed its tenant, both peers get a WebSocket close
// frame with status 1001 (going away), so clients see 1001 and not 1006
// (abnormal closure). Frames are still not parsed for their content: each
// direction only follows frame boundaries (headers and lengths), because a
// close frame may go between two frames (control frames may even go
// between the fragments of a message, RFC 6455 §5.4) but never inside one.
// A direction stopped inside a frame (its peer was not reading) gets no
// close frame; its peer then sees the connection close, as before.

// closeGrace bounds the goodbye: writing the close frames, and waiting for
// the peers to answer and hang up (closing a connection with unread data
// would reset it and could lose the close frame).
const closeGrace = time.Second

// statusGoingAway is WebSocket close status 1001, big-endian.
var statusGoingAway = [2]byte{0x03, 0xe9}

// frames follows WebSocket frame boundaries in one direction of a tunnel,
// from the bytes written, without looking at payloads.
type frames struct {
	hdr  [14]byte // the header being read: 2 bytes, 0/2/8 of length, 0/4 of mask
	n    int      // header bytes so far
	need int      // the header's length once its first 2 bytes are in
	left uint64   // payload bytes still to pass
}

// feed moves the tracker past b.
func (f *frames) feed(b []byte) {
	for len(b) > 0 {
		if f.left > 0 {
			k := min(uint64(len(b)), f.left)
			f.left -= k
			b = b[k:]
			continue
		}
		f.hdr[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n == 2 {
			f.need = 2
			switch f.hdr[1] & 0x7f {
			case 126:
				f.need += 2
			case 127:
				f.need += 8
			}
			if f.hdr[1]&0x80 != 0 { // masked (client to server)
				f.need += 4
			}
		}
		if f.n < 2 || f.n < f.need {
			continue
		}
		switch l := f.hdr[1] & 0x7f; l {
		case 126:
			f.left = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
		case 127:
			f.left = binary.BigEndian.Uint64(f.hdr[2:10])
		default:
			f.left = uint64(l)
		}
		f.n, f.need = 0, 0
	}
}

// boundary reports whether the bytes so far end with a whole frame.
func (f *frames) boundary() bool { return f.n == 0 && f.left == 0 }

// goAway ends the tunnel from Safeclose's side: the pipes stop (past
// deadlines unblock their reads and writes; the connections stay open) and
// the tunnel's handler then says goodbye (shut). It does not wait.
func (t *tunnel) goAway() { t.stop(true) }

// stop ends the pipes once; away keeps the connections open for the
// goodbye, otherwise they are closed at once.
func (t *tunnel) stop(away bool) {
	t.once.Do(func() {
		t.away.Store(away)
		t.closed.Store(true) // before the deadlines: see pipe
		// fasthttp's hijacked conn ignores Close (the server closes it
		// when the hijack handler returns); a past deadline unblocks the
		// pipes, so the handler returns.
		_ = t.client.SetDeadline(past)
		_ = t.up.SetDeadline(past)
		if !away {
			t.client.Close()
			t.up.Close()
		}
	})
}

// shut runs when the tunnel's handler ends: after a goAway, each peer
// whose stream stopped at a frame boundary gets a close frame with 1001,
// and shut waits (at most closeGrace) for it to answer and hang up. Then
// both connections are closed.
func (t *tunnel) shut() {
	t.close() // a no-op after goAway
	if t.away.Load() {
		t.sayGoingAway()
	}
	t.client.Close()
	t.up.Close()
}

func (t *tunnel) sayGoingAway() {
	deadline := time.Now().Add(closeGrace)
	var wg sync.WaitGroup
	if t.toClient.boundary() {
		_ = t.client.SetDeadline(deadline)
		// Server to client: unmasked, FIN + opcode 8, 2 bytes of status.
		if _, err := t.client.Write([]byte{0x88, 0x02, statusGoingAway[0], statusGoingAway[1]}); err == nil {
			wg.Add(1)
			go func() { defer wg.Done(); drain(t.client) }()
		}
	}
	if t.toUp.boundary() {
		_ = t.up.SetDeadline(deadline)
		// Client to server frames are masked (RFC 6455 §5.3).
		var m [4]byte
		_, _ = rand.Read(m[:])
		f := []byte{0x88, 0x82, m[0], m[1], m[2], m[3], statusGoingAway[0] ^ m[0], statusGoingAway[1] ^ m[1]}
		if _, err := t.up.Write(f); err == nil {
			wg.Add(1)
			go func() { defer wg.Done(); drain(t.up) }()
		}
	}
	wg.Wait()
}

// drain reads and drops c until its peer hangs up or the deadline passes.
func drain(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
}
