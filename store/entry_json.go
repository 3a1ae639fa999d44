package store

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// EncodeEntry and DecodeEntry are the queue record codec: JSON framed with
// its length and CRC-32C (record.go).
//
// The JSON is written by appendEntryJSON, byte for byte what json.Marshal
// writes for an Entry (TestEntryJSONMatchesMarshal), without reflection and
// straight after the frame's header, so an entry costs one allocation and
// no copy (issue 12: json.Marshal and the frame's copy were most of the
// store's own CPU per enqueued webhook). Anything the fast path does not
// cover (a string that needs escaping, a time json.Marshal refuses) goes
// through json.Marshal as before.
func EncodeEntry(e Entry) ([]byte, error) {
	out, ok := appendEntryJSON(make([]byte, 9, 9+entryJSONSize(&e)), &e)
	if !ok {
		return marshalFramed(e)
	}
	return sealFrame(out), nil
}

// marshalFramed is a record's slow path: json.Marshal(v), framed.
func marshalFramed(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return frame(b), nil
}

// entryJSONSize is a close upper bound of e's JSON for the fast path.
func entryJSONSize(e *Entry) int {
	n := 330 + len(e.ID) + len(e.Tenant) + base64.StdEncoding.EncodedLen(len(e.Body)) +
		len(e.LastError) + len(e.LeaseOwner) + 3*len(time.RFC3339Nano)
	for _, h := range e.Headers {
		n += 22 + len(h.Name) + len(h.Value)
	}
	return n
}

// appendEntryJSON appends json.Marshal(e) to b; ok is false, and b is to be
// dropped, when a field needs what only json.Marshal does (escaping, an
// error for a time outside RFC 3339).
func appendEntryJSON(b []byte, e *Entry) (_ []byte, ok bool) {
	b = append(b, `{"id":`...)
	if b, ok = appendPlainString(b, e.ID); !ok {
		return b, false
	}
	b = append(b, `,"tenant":`...)
	if b, ok = appendPlainString(b, e.Tenant); !ok {
		return b, false
	}
	b = append(b, `,"body":`...)
	if e.Body == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, e.Body)
		b = append(b, '"')
	}
	if len(e.Headers) > 0 {
		b = append(b, `,"headers":[`...)
		for i, h := range e.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"Name":`...)
			if b, ok = appendPlainString(b, h.Name); !ok {
				return b, false
			}
			b = append(b, `,"Value":`...)
			if b, ok = appendPlainString(b, h.Value); !ok {
				return b, false
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"received_at":`...)
	if b, ok = appendTime(b, e.ReceivedAt); !ok {
		return b, false
	}
	b = append(b, `,"body_sha256":[`...)
	for i, c := range e.BodySHA256 {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(c), 10)
	}
	b = append(b, `],"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"next_at":`...)
	if b, ok = appendTime(b, e.NextAt); !ok {
		return b, false
	}
	if e.LastError != "" {
		b = append(b, `,"last_error":`...)
		if b, ok = appendPlainString(b, e.LastError); !ok {
			return b, false
		}
	}
	if e.LeaseToken != 0 {
		b = append(b, `,"lease_token":`...)
		b = strconv.AppendUint(b, e.LeaseToken, 10)
	}
	if e.LeaseOwner != "" {
		b = append(b, `,"lease_owner":`...)
		if b, ok = appendPlainString(b, e.LeaseOwner); !ok {
			return b, false
		}
	}
	if !e.LeaseUntil.IsZero() {
		b = append(b, `,"lease_until":`...)
		if b, ok = appendTime(b, e.LeaseUntil); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendPlainString quotes s if json.Marshal would write it unescaped:
// printable ASCII but for `"`, `\` and the HTML characters <, > and &.
func appendPlainString(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// appendTime writes t as time.Time.MarshalJSON does.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(b, '"'), true
}

// encodeOrphan is the orphan record: json.Marshal(o), framed, on the same
// fast path as a queue entry (a worker writes one for every webhook naming
// an item nobody holds; json.Marshal was a fifth of its CPU for one, issue
// 12).
func encodeOrphan(o Orphan) ([]byte, error) {
	size := 200 + len(o.Kind) + len(o.Tenant) + len(o.User) + len(o.ItemID) + len(o.LinkTokenHash) +
		len(o.IntentID) + len(o.Detail) + 2*len(time.RFC3339Nano)
	out, ok := appendOrphanJSON(make([]byte, 9, 9+size), &o)
	if !ok {
		return marshalFramed(o)
	}
	return sealFrame(out), nil
}

// appendOrphanJSON appends json.Marshal(o) to b, or reports !ok as
// appendEntryJSON does.
func appendOrphanJSON(b []byte, o *Orphan) (_ []byte, ok bool) {
	b = append(b, `{"kind":`...)
	if b, ok = appendPlainString(b, o.Kind); !ok {
		return b, false
	}
	b = append(b, `,"tenant":`...)
	if b, ok = appendPlainString(b, o.Tenant); !ok {
		return b, false
	}
	for _, f := range [...]struct{ name, v string }{
		{`,"user":`, o.User}, {`,"item_id":`, o.ItemID}, {`,"link_token_hash":`, o.LinkTokenHash},
		{`,"intent_id":`, o.IntentID}, {`,"detail":`, o.Detail},
	} {
		if f.v == "" { // omitempty
			continue
		}
		b = append(b, f.name...)
		if b, ok = appendPlainString(b, f.v); !ok {
			return b, false
		}
	}
	b = append(b, `,"first_seen":`...)
	if b, ok = appendTime(b, o.FirstSeen); !ok {
		return b, false
	}
	b = append(b, `,"last_seen":`...)
	if b, ok = appendTime(b, o.LastSeen); !ok {
		return b, false
	}
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(o.Count), 10)
	return append(b, '}'), true
}
