package hostabi_test

import (
	"context"
	"testing"
	"time"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/internal/cputime"
)

// BenchmarkAuthenticate is the per-request cost of a pooled Go-guest auth
// call, host functions and the deadline included. TestAuthDecisions checks
// the same guest's answers.
func BenchmarkAuthenticate(b *testing.B) {
	e := newEngine(b)
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	cases := []struct {
		name  string
		guest string
		opts  hostabi.PluginOptions
		r     hostabi.Request
	}{
		{"header", "allow", hostabi.PluginOptions{}, bytesReq(hdr("Host", "t1.test", "User-Agent", "wrk", "X-User", "alice"))},
		{"jwt", "jwtauth", hostabi.PluginOptions{Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
			Secrets: map[string][]byte{"main": key}}, bytesReq(hdr("Host", "t1.test", "Authorization", "Bearer "+tok))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			p := load(b, e, c.guest, c.opts)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d, err := p.Authenticate(context.Background(), c.r)
					if err != nil || !d.Allow {
						b.Fatal(d, err)
					}
				}
			})
		})
	}
}

// BenchmarkAuthenticateCached is the same jwt call with the decision cache
// on (a session presenting the same token again).
func BenchmarkAuthenticateCached(b *testing.B) {
	e := newEngine(b)
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	p := load(b, e, "jwtauth", hostabi.PluginOptions{CacheTTL: time.Minute, Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
		Secrets: map[string][]byte{"main": key}})
	r := &req{headers: hdr("Host", "t1.test", "Authorization", "Bearer "+tok)}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := p.Authenticate(context.Background(), r); err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
}

// BenchmarkEnforcement is the pooled call under each way of enforcing the
// deadline, in the same run: fuel (the default), wazero's
// CloseOnContextDone, and none (the floor). cpu-ns/op is the process's CPU
// time per call, which stays meaningful on a loaded machine.
// TestEnforcementModes checks the enforced modes stop a looping guest. The
// -as rows run the AssemblyScript ports (skipped without npm).
func BenchmarkEnforcement(b *testing.B) {
	key := []byte("tenant-jwt-secret-0123456789abcd")
	tok := signHS256(key, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	modes := []struct {
		name string
		enf  hostabi.Enforcement
	}{{"fuel", hostabi.EnforceFuel}, {"context", hostabi.EnforceContext}, {"none", hostabi.EnforceNoneForBench}}
	guests := []struct {
		name  string
		guest string
		opts  hostabi.PluginOptions
		r     hostabi.Request
	}{
		{"trivial", "allow", hostabi.PluginOptions{}, &fixedReq{name: []byte("X-User"), value: []byte("alice")}},
		{"jwt", "jwtauth", hostabi.PluginOptions{Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
			Secrets: map[string][]byte{"main": key}}, bytesReq(hdr("Host", "t1.test", "Authorization", "Bearer "+tok))},
		// The same guests in AssemblyScript (no Go runtime in the guest):
		// the host's own per-call floor.
		{"trivial-as", "allow-as", hostabi.PluginOptions{}, &fixedReq{name: []byte("X-User"), value: []byte("alice")}},
		{"jwt-as", "jwtauth-as", hostabi.PluginOptions{Caps: hostabi.Capabilities{Config: true, Crypto: true, Log: true},
			Secrets: map[string][]byte{"main": key}}, bytesReq(hdr("Host", "t1.test", "Authorization", "Bearer "+tok))},
	}
	for _, g := range guests {
		for _, m := range modes {
			b.Run(g.name+"/"+m.name, func(b *testing.B) {
				p := load(b, newEngineWith(b, m.enf), g.guest, g.opts)
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cputime.Process()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if d, err := p.Authenticate(context.Background(), g.r); err != nil || !d.Allow {
							b.Fatal(d, err)
						}
					}
				})
				if cpu := cputime.Process() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}

// hdrReq is a Request whose headers are byte slices already, as a server's
// are: reading it allocates nothing, so a benchmark counts the host's
// allocations only (req converts strings on every visit).
type hdrReq struct {
	headers [][2][]byte
}

func bytesReq(h [][2]string) *hdrReq {
	r := &hdrReq{}
	for _, kv := range h {
		r.headers = append(r.headers, [2][]byte{[]byte(kv[0]), []byte(kv[1])})
	}
	return r
}

func (r *hdrReq) Method() []byte { return []byte("GET") }
func (r *hdrReq) URI() []byte    { return []byte("/") }
func (r *hdrReq) VisitHeaders(fn func(name, value []byte)) {
	for _, h := range r.headers {
		fn(h[0], h[1])
	}
}
func (r *hdrReq) SourceAddr() []byte { return []byte("127.0.0.1:40000") }
func (r *hdrReq) Body() []byte       { return nil }
