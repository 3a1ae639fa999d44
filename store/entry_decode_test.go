package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// sameAsUnmarshal checks decodeEntryJSON against json.Unmarshal on b: when
// the fast path takes b, json.Unmarshal must take it too and give the same
// Entry. It reports whether the fast path took it.
func sameAsUnmarshal(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := decodeEntryJSON(b)
	if !ok {
		return false
	}
	var want Entry
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("decodeEntryJSON took %q, which json.Unmarshal refuses: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEntryJSON(%q) =\n%#v\njson.Unmarshal gives\n%#v", b, got, want)
	}
	return true
}

// Every record EncodeEntry writes on its fast path (plain strings) is
// decoded without encoding/json, to what json.Unmarshal gives.
func TestDecodeEntryJSONRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	plain := func() string {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(' ' + r.IntN(95))
			if b[i] == '"' || b[i] == '\\' || b[i] == '<' || b[i] == '>' || b[i] == '&' {
				b[i] = 'x'
			}
		}
		return string(b)
	}
	fast := 0
	for range 5000 {
		var body []byte
		switch r.IntN(3) {
		case 0:
		case 1:
			body = []byte{}
		default:
			body = make([]byte, r.IntN(600))
			for i := range body {
				body[i] = byte(r.IntN(256))
			}
		}
		e := randomEntry(r, plain, body)
		e.ID, e.Tenant = "id"+e.ID, "t"+e.Tenant // never empty
		rec, err := EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		b, err := unframe(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !sameAsUnmarshal(t, b) {
			t.Fatalf("the fast path refused EncodeEntry's own record %q", b)
		}
		fast++
		d, err := DecodeEntry(rec)
		if err != nil {
			t.Fatal(err)
		}
		var want Entry
		if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(d, want) {
			t.Fatalf("DecodeEntry = %#v; json.Unmarshal = %#v, %v", d, want, err)
		}
	}
	if fast != 5000 {
		t.Fatalf("fast path took %d of 5000 records", fast)
	}
}

// What the fast path does not cover goes to json.Unmarshal, so DecodeEntry
// still reads it: escapes, spaces, another key order, unusual numbers.
func TestDecodeEntryJSONFallsBack(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		`{"id":"a\u0041","tenant":"t","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"tenant":"t","id":"a","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"id": "a","tenant":"t","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"id":"a","tenant":"t","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":-0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"id":"a","tenant":"t","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"id":"a","tenant":"t","body":null,"headers":[],"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z"}`,
		`{"id":"a","tenant":"t","body":null,"received_at":"2026-12-06T00:00:00Z","body_sha256":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"attempts":0,"next_at":"2026-12-06T00:00:00Z","extra":1}`,
	} {
		if _, ok := decodeEntryJSON([]byte(s)); ok {
			t.Errorf("the fast path took %s", s)
		}
		var want Entry
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", s, err)
		}
		got, err := DecodeEntry(frame([]byte(s)))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("DecodeEntry(%s) = %#v, %v; want %#v", s, got, err, want)
		}
	}
}

// FuzzDecodeEntryJSON: whatever the bytes, when the fast path takes them
// its Entry is json.Unmarshal's.
func FuzzDecodeEntryJSON(f *testing.F) {
	at := time.Date(2026, 12, 6, 20, 1, 2, 345678900, time.FixedZone("z", 3600))
	for _, e := range []Entry{
		{ID: "a", Tenant: "t", Body: []byte("x"), ReceivedAt: at, NextAt: at},
		{ID: "0000018c1a2b3c4d00000001", Tenant: "t1", Body: []byte(`{"webhook_type":"ITEM"}`),
			Headers:    []Header{{"Plaid-Verification", "eyJ.e30.sig"}, {"Content-Type", "application/json"}},
			ReceivedAt: at, BodySHA256: [32]byte{0, 1, 255}, Attempts: 3, NextAt: at, LastError: "upstream 502",
			LeaseToken: 1 << 40, LeaseOwner: "w", LeaseUntil: at},
	} {
		rec, _ := EncodeEntry(e)
		b, _ := unframe(rec)
		f.Add(b)
		f.Add(bytes.Replace(b, []byte(`"attempts":`), []byte(`"attempts":-`), 1))
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameAsUnmarshal(t, b) })
}

// BenchmarkDecodeEntry: a webhook's queue record (1 KiB body, Plaid's
// headers) decoded by DecodeEntry, beside json.Unmarshal of the same
// record (the codec before issue 12's fast path).
func BenchmarkDecodeEntry(b *testing.B) {
	at := time.Date(2026, 12, 6, 20, 1, 2, 345678900, time.UTC)
	e := Entry{ID: "0000018c1a2b3c4d00000001", Tenant: "t1", Body: bytes.Repeat([]byte(`{"a":1}`), 146),
		Headers: []Header{{"Plaid-Verification", string(bytes.Repeat([]byte("e"), 600))}, {"Content-Type", "application/json"},
			{"User-Agent", "Plaid Verifier"}}, ReceivedAt: at, NextAt: at, BodySHA256: [32]byte{1, 2, 3}}
	rec, err := EncodeEntry(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("DecodeEntry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeEntry(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := unframe(rec)
			if err != nil {
				b.Fatal(err)
			}
			var d Entry
			if err := json.Unmarshal(p, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
