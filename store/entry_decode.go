package store

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"time"
)

// decodeEntryJSON reads the JSON appendEntryJSON writes (json.Marshal's
// layout of an Entry: its fields in order, no spaces, unescaped strings)
// without reflection. A lease that is not served from the in-memory fresh
// entry (qindex.go: a backlog larger than freshMax) decodes its record, and
// encoding/json was most of that lease's CPU (issue 12: the rate fell as a
// 20k backlog drained past the fresh entries).
//
// ok is false for anything else (escapes, spaces, other key order, numbers
// json.Marshal would not write); DecodeEntry then uses json.Unmarshal. When
// ok, e is what json.Unmarshal gives for b (FuzzDecodeEntryJSON). Every
// value goes through the same function encoding/json uses for it
// (base64.StdEncoding for the body, time.Time.UnmarshalJSON for times).
func decodeEntryJSON(b []byte) (e Entry, ok bool) {
	d := entryDecoder{b: b}
	if !d.lit(`{"id":`) || !d.str(&e.ID) || !d.lit(`,"tenant":`) || !d.str(&e.Tenant) || !d.lit(`,"body":`) {
		return Entry{}, false
	}
	if d.lit("null") {
		e.Body = nil
	} else {
		var enc []byte
		if !d.raw(&enc) {
			return Entry{}, false
		}
		e.Body = make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
		n, err := base64.StdEncoding.Decode(e.Body, enc)
		if err != nil {
			return Entry{}, false
		}
		e.Body = e.Body[:n]
	}
	if d.lit(`,"headers":[`) {
		for i := 0; ; i++ {
			if i > 0 && !d.lit(",") {
				break
			}
			var h Header
			if !d.lit(`{"Name":`) || !d.str(&h.Name) || !d.lit(`,"Value":`) || !d.str(&h.Value) || !d.lit("}") {
				return Entry{}, false
			}
			e.Headers = append(e.Headers, h)
		}
		if !d.lit("]") { // at least one header: "headers":[] fails above
			return Entry{}, false
		}
	}
	if !d.lit(`,"received_at":`) || !d.time(&e.ReceivedAt) || !d.lit(`,"body_sha256":[`) {
		return Entry{}, false
	}
	for i := range e.BodySHA256 {
		if i > 0 && !d.lit(",") {
			return Entry{}, false
		}
		v, ok := d.uint(255)
		if !ok {
			return Entry{}, false
		}
		e.BodySHA256[i] = byte(v)
	}
	if !d.lit(`],"attempts":`) {
		return Entry{}, false
	}
	neg := d.lit("-")
	a, ok := d.uint(1 << 62)
	if !ok || (neg && a == 0) {
		return Entry{}, false
	}
	e.Attempts = int(a)
	if neg {
		e.Attempts = -e.Attempts
	}
	if !d.lit(`,"next_at":`) || !d.time(&e.NextAt) {
		return Entry{}, false
	}
	if d.lit(`,"last_error":`) && (!d.str(&e.LastError) || e.LastError == "") {
		return Entry{}, false
	}
	if d.lit(`,"lease_token":`) {
		if e.LeaseToken, ok = d.uint(^uint64(0)); !ok || e.LeaseToken == 0 {
			return Entry{}, false
		}
	}
	if d.lit(`,"lease_owner":`) && (!d.str(&e.LeaseOwner) || e.LeaseOwner == "") {
		return Entry{}, false
	}
	if d.lit(`,"lease_until":`) && (!d.time(&e.LeaseUntil) || e.LeaseUntil.IsZero()) {
		return Entry{}, false
	}
	if !d.lit("}") || len(d.b) != 0 {
		return Entry{}, false
	}
	return e, true
}

// entryDecoder consumes d.b from the front; each method reports whether
// what it expects is there.
type entryDecoder struct{ b []byte }

func (d *entryDecoder) lit(s string) bool {
	if len(d.b) < len(s) || string(d.b[:len(s)]) != s {
		return false
	}
	d.b = d.b[len(s):]
	return true
}

// raw reads a quoted string of printable ASCII without escapes and
// returns its bytes (still in d's buffer).
func (d *entryDecoder) raw(out *[]byte) bool {
	if len(d.b) == 0 || d.b[0] != '"' {
		return false
	}
	end := bytes.IndexByte(d.b[1:], '"')
	if end < 0 {
		return false
	}
	s := d.b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	*out, d.b = s, d.b[2+end:]
	return true
}

func (d *entryDecoder) str(out *string) bool {
	var s []byte
	if !d.raw(&s) {
		return false
	}
	*out = string(s)
	return true
}

// time reads a quoted time with time.Time.UnmarshalJSON, as encoding/json
// does, given the quoted bytes where they are (raw consumed exactly them).
func (d *entryDecoder) time(t *time.Time) bool {
	quoted := d.b
	var s []byte
	if !d.raw(&s) {
		return false
	}
	return t.UnmarshalJSON(quoted[:len(quoted)-len(d.b)]) == nil
}

// uint reads a non-negative integer as strconv writes it (no sign, no
// leading zero, no fraction or exponent), at most max.
func (d *entryDecoder) uint(max uint64) (uint64, bool) {
	n := 0
	for n < len(d.b) && '0' <= d.b[n] && d.b[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && d.b[0] == '0') {
		return 0, false
	}
	if n < len(d.b) && (d.b[n] == '.' || d.b[n] == 'e' || d.b[n] == 'E') {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[:n]), 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}
