package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// wantFramed is the codec as it was, json.Marshal then frame: the slow
// path the fast one must match (marshalFramed).
func wantFramed(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := marshalFramed(e)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	return b
}

// TestEntryJSONMatchesMarshal: EncodeEntry writes exactly the bytes
// json.Marshal and frame wrote (records already stored, by this store or
// store/pg, and exports stay readable both ways), on the fast path and on
// its fallback.
func TestEntryJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 20, 1, 2, 345678900, time.UTC)
	full := Entry{
		ID: "0000018c1a2b3c4d00000001", Tenant: "t1", Body: []byte(`{"webhook_type":"ITEM"}`),
		Headers:    []Header{{"Plaid-Verification", "eyJhbGciOiJFUzI1NiJ9.e30.sig"}, {"Content-Type", "application/json"}},
		ReceivedAt: at, BodySHA256: [32]byte{0, 1, 2, 9, 10, 99, 100, 255}, Attempts: 3, NextAt: at.Add(time.Minute),
		LastError: "upstream 502", LeaseToken: 1 << 40, LeaseOwner: "worker-1", LeaseUntil: at.Add(2 * time.Minute),
	}
	tests := []struct {
		name string
		e    Entry
	}{
		{"zero", Entry{}},
		{"fresh", Entry{ID: "a", Tenant: "t", Body: []byte("x"), ReceivedAt: at, NextAt: at}},
		{"full", full},
		{"empty body", Entry{ID: "a", Tenant: "t", Body: []byte{}}},
		{"empty headers", Entry{ID: "a", Tenant: "t", Headers: []Header{}}},
		{"empty header value", Entry{ID: "a", Tenant: "t", Headers: []Header{{"", ""}}}},
		{"negative attempts", Entry{ID: "a", Tenant: "t", Attempts: -1}},
		{"zone offset", Entry{ID: "a", Tenant: "t", ReceivedAt: at.In(time.FixedZone("x", -(5*3600 + 30*60)))}},
		{"monotonic clock", Entry{ID: "a", Tenant: "t", ReceivedAt: time.Now(), NextAt: time.Now()}},
		{"html in error", Entry{ID: "a", Tenant: "t", LastError: `<a href="x">&</a>`}},
		{"quote and backslash", Entry{ID: `a"b`, Tenant: `t\u`}},
		{"control", Entry{ID: "a", Tenant: "t", LastError: "line\nnext\ttab\x00\x7f"}},
		{"utf-8", Entry{ID: "a", Tenant: "t", LeaseOwner: "wörker \u2028 \u2029"}},
		{"invalid utf-8", Entry{ID: "a", Tenant: "t", Headers: []Header{{"User-Agent", "\xff\xfe"}}}},
	}
	for _, e := range []Entry{full, tests[1].e} { // what the queue writes takes the fast path
		if _, ok := appendEntryJSON(nil, &e); !ok {
			t.Errorf("appendEntryJSON(%+v) fell back to json.Marshal", e)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EncodeEntry(tt.e)
			if err != nil {
				t.Fatalf("EncodeEntry: %v", err)
			}
			if want := wantFramed(t, tt.e); !bytes.Equal(got, want) {
				t.Errorf("EncodeEntry(%s) =\n%q\nwant\n%q", tt.name, got, want)
			}
		})
	}
}

// TestEntryJSONRandom compares EncodeEntry with json.Marshal on random
// entries, strings drawn from every byte value.
func TestEntryJSONRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string { return randomText(r, r.IntN(12)) }
	for range 5000 {
		var body []byte
		if r.IntN(3) > 0 {
			body = []byte(str())
		}
		e := randomEntry(r, str, body)
		got, err := EncodeEntry(e)
		if err != nil {
			t.Fatalf("EncodeEntry(%+v): %v", e, err)
		}
		if want := wantFramed(t, e); !bytes.Equal(got, want) {
			t.Fatalf("EncodeEntry(%+v) =\n%q\nwant\n%q", e, got, want)
		}
		if _, err := DecodeEntry(got); e.ID != "" && e.Tenant != "" && err != nil {
			t.Fatalf("DecodeEntry(EncodeEntry(%+v)): %v", e, err)
		}
	}
}

// randomText is n bytes, one in four of any value, the rest printable ASCII.
func randomText(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		if r.IntN(4) == 0 {
			b[i] = byte(r.IntN(256))
		} else {
			b[i] = byte(' ' + r.IntN(95))
		}
	}
	return string(b)
}

// randomEntry is an Entry with body and random fields: strings from str,
// times in random zones (one in five zero), attempts from -5, a lease token
// one time in two, up to two headers, a random body hash.
func randomEntry(r *rand.Rand, str func() string, body []byte) Entry {
	tm := func() time.Time {
		if r.IntN(5) == 0 {
			return time.Time{}
		}
		return time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(time.FixedZone("z", (r.IntN(48)-24)*900))
	}
	e := Entry{ID: str(), Tenant: str(), Body: body, ReceivedAt: tm(), NextAt: tm(), LeaseUntil: tm(),
		Attempts: r.IntN(100) - 5, LastError: str(), LeaseOwner: str()}
	if r.IntN(2) == 0 {
		e.LeaseToken = r.Uint64()
	}
	for range r.IntN(3) {
		e.Headers = append(e.Headers, Header{str(), str()})
	}
	for i := range e.BodySHA256 {
		e.BodySHA256[i] = byte(r.IntN(256))
	}
	return e
}

// TestEntryJSONRefusesLikeMarshal: a time json.Marshal refuses is refused.
func TestEntryJSONRefusesLikeMarshal(t *testing.T) {
	t.Parallel()
	e := Entry{ID: "a", Tenant: "t", NextAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(e); err == nil {
		t.Fatal("json.Marshal accepted year 10000; the test needs a refused time")
	}
	if b, err := EncodeEntry(e); err == nil {
		t.Errorf("EncodeEntry(year 10000) = %q, nil; want json.Marshal's error", b)
	}
}

// FuzzEntryJSON: EncodeEntry is json.Marshal and frame for any strings.
func FuzzEntryJSON(f *testing.F) {
	f.Add("id", "tenant", []byte("body"), "Name", "Value", "err", int64(0), 0)
	f.Add("<", "\xff", []byte(nil), "\u2028", "\"\\", "\n", int64(-62135596800), 1)
	f.Fuzz(func(t *testing.T, id, tenant string, body []byte, hn, hv, lastErr string, unix int64, attempts int) {
		at := time.Unix(unix, 0).UTC()
		e := Entry{ID: id, Tenant: tenant, Body: body, Headers: []Header{{hn, hv}}, ReceivedAt: at, NextAt: at,
			LastError: lastErr, Attempts: attempts}
		want, werr := json.Marshal(e)
		got, err := EncodeEntry(e)
		if (err != nil) != (werr != nil) {
			t.Fatalf("EncodeEntry err = %v, json.Marshal err = %v", err, werr)
		}
		if err == nil && !bytes.Equal(got, frame(want)) {
			t.Fatalf("EncodeEntry =\n%q\nwant\n%q", got, frame(want))
		}
	})
}

// TestOrphanJSONMatchesMarshal: an orphan record is what json.Marshal and
// frame wrote before the fast path (records already stored stay readable
// both ways), on random orphans with strings from every byte value and
// empty fields (omitempty), and with a time json.Marshal refuses.
func TestOrphanJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	str := func() string { return randomText(r, r.IntN(3)*r.IntN(12)) } // a third empty
	fast := 0
	for i := range 5000 {
		o := Orphan{Kind: str(), Tenant: str(), User: str(), ItemID: str(), LinkTokenHash: str(), IntentID: str(),
			Detail: str(), FirstSeen: time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(time.FixedZone("z", (r.IntN(48)-24)*900)),
			LastSeen: time.Now(), Count: r.IntN(100) - 5}
		if i == 0 {
			o = Orphan{Kind: OrphanUnknownItem, Tenant: "t1", ItemID: "item", Detail: "webhook ITEM/ERROR", FirstSeen: o.FirstSeen, LastSeen: o.LastSeen, Count: 1}
		}
		want, err := marshalFramed(o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeOrphan(o)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodeOrphan(%+v) = %q, %v\nwant %q", o, got, err, want)
		}
		if _, ok := appendOrphanJSON(nil, &o); ok {
			fast++
		} else if i == 0 {
			t.Fatal("an unknown item's orphan fell back to json.Marshal")
		}
	}
	if fast == 0 {
		t.Error("no orphan took the fast path")
	}
	o := Orphan{Kind: "k", Tenant: "t", ItemID: "i", LastSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if b, err := encodeOrphan(o); err == nil {
		t.Errorf("encodeOrphan(year 10000) = %q, nil; want json.Marshal's error", b)
	}
}
