package fuel

import "testing"

// BenchmarkInstrument is the load-time cost of rewriting a real Go guest
// (TestInstrumentGoGuests checks the result compiles).
func BenchmarkInstrument(b *testing.B) {
	in := buildGuest(b, "jwtauth")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Instrument(in, Options{Initial: 1 << 32}); err != nil {
			b.Fatal(err)
		}
	}
}
