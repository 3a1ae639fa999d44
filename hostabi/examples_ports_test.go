package hostabi_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/safeclose/safeclose/hostabi"
	"github.com/safeclose/safeclose/hostabi/abi"
)

// The AssemblyScript ports of pathrule and webhookfilter answer exactly as
// the Go examples do: the tests below run both on the same inputs, far
// more than the examples' own cases (addresses, prefixes and configs Go's
// netip and encoding/json refuse or read in odd ways; events with every
// kind of number, escape and invalid byte), and compare every answer.

// errClass names how a call failed, for comparing a guest with its port.
func errClass(err error) string {
	var te *hostabi.TrapError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, hostabi.ErrBadResult):
		return "invalid result"
	case errors.As(err, &te):
		return "trap"
	}
	return err.Error()
}

// portOpts are options for comparing a guest with its port: failures are
// expected, so the penalty box must not open.
func portOpts(tenant, config string, kind hostabi.Kind) hostabi.PluginOptions {
	o := hostabi.PluginOptions{Tenant: tenant, Kind: kind, Caps: hostabi.Capabilities{Config: true}, PenaltyAfter: 1 << 30, PoolSize: 1}
	if config != "-" {
		o.Config = []byte(config)
	}
	return o
}

// loadPort loads the Go example name and its AssemblyScript port
// (name-as) with config ("-": none), as tenants "g"+id and "a"+id.
func loadPort(t *testing.T, e *hostabi.Engine, name, id, config string, kind hostabi.Kind) (goP, asP *hostabi.Plugin) {
	t.Helper()
	return load(t, e, name, portOpts("g"+id, config, kind)), load(t, e, name+"-as", portOpts("a"+id, config, kind))
}

func TestPathRulePortAgrees(t *testing.T) {
	e := newEngine(t)
	configs := []string{
		`{"allow_cidrs":["10.0.0.0/8","127.0.0.0/8","::1/128","2001:db8::/32"],"allow_paths":["/internal/","/health"]}`,
		`{"allow_cidrs":["0.0.0.0/0","::/0"],"allow_paths":["/"]}`,
		`{"allow_cidrs":["10.1.2.3/32","fe80::/10","::ffff:10.0.0.0/104"],"allow_paths":[null]}`,
		`{"allow_cidrs":["10.1.2.99/24","2001:db8:1::5/127","1.2.3.4/0"],"allow_paths":["/\ufffd","/é"]}`,
		`{"ALLOW_CIDRS":["10.0.0.0/8"],"Allow_Paths":["/health"],"allow_cıdrs":["::/0"],"allow_pathſ":["/internal/"]}`,
		`{"allow_cidrs":["10.0.0.0/8"],"allow_cidrs":["192.168.0.0/16"],"allow_paths":["/a","/health"],"allow_paths":[null]}`,
		`{"allow_cidrs":null,"allow_paths":["/"]}`,
		`{"allow_cidrs":["10.0.0.0/8"],"allow_paths":[],"other":[1e400,{"x":01.5e2}]}`,
		`{"allow_cidrs":["10.0.0.0/8"],"allow_paths":["/"],"other":1e400}`,
		`null`, `-`, `{}`,
		// Refused: 503 on every call.
		`{"allow_cidrs":["10.0.0.0/33"]}`, `{"allow_cidrs":["::/129"]}`, `{"allow_cidrs":["10.0.0.0/08"]}`,
		`{"allow_cidrs":["10.0.0.0/+8"]}`, `{"allow_cidrs":["10.0.0.0/"]}`, `{"allow_cidrs":["10.0.0.0"]}`,
		`{"allow_cidrs":["010.0.0.0/8"]}`, `{"allow_cidrs":["fe80::1%eth0/64"]}`, `{"allow_cidrs":["1.2.3.4.5/8"]}`,
		`{"allow_cidrs":["1::2::3/64"]}`, `{"allow_cidrs":["12345::/16"]}`, `{"allow_cidrs":[null]}`,
		`{"allow_cidrs":[1]}`, `{"allow_cidrs":"10.0.0.0/8"}`, `{"allow_paths":{"a":"b"}}`, `[1]`, `"x"`, `{"a":01}`,
		`{"allow_cidrs":["10.0.0.0/8"],}`, `{"allow_cidrs":["10.0.0.0/8"]} x`,
	}
	sources := []string{
		"10.1.2.3:999", "10.1.2.3:0", "10.1.2.3:0080", "10.1.2.3:65535", "10.1.2.3:65536", "10.1.2.3:", "10.1.2.3",
		"10.1.2.3:-1", "10.1.2.3:+1", "010.1.2.3:1", "10.1.2.256:1", "10.1.2:1", "10.1.2.3.4:1", ":80", "[]:80",
		"127.0.0.1:40000", "192.168.7.7:1", "1.2.3.4:5", "10.1.2.3%eth0:1",
		"[::1]:80", "[::1]", "::1:80", "[10.1.2.3]:1", "[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1%eth0]:80",
		"[::ffff:a00:1]:80", "[fe80::1%eth0]:80", "[fe80::1%]:80", "[fe80::1]:80", "[2001:db8::1]:443",
		"[2001:DB8:0:0:1:0:0:1]:1", "[2001:0db8:0000:0000:0000:0000:0000:0001]:1", "[2001:db8:1::4]:1",
		"[::]:1", "[1:2:3:4:5:6:7:8]:1", "[1::2:3:4:5:6:7]:1", "[1:2:3:4:5:6:7::]:1", "[1:2:3:4:5:6:7:8::]:1",
		"[::1.2.3.4]:1", "[1:2:3:4:5:6:1.2.3.4]:1", "[1:2:3:4:5:6:7:1.2.3.4]:1", "[::ffff:1.2.3.4.5]:1",
		"[12345::]:1", "[::g]:1", "[1:::2]:1", "[:1]:1", "[1:]:1", "[1:0:0:2:0:0:0:3]:1", "[0:0:1:0:0:1:0:0]:1",
		"[2001:db8::a:b]:1", "[1:2::]:1", "[::ffff:10.0.0.1%\xff]:80", "[::ffff:10.0.0.1%\xc3]:80", "10.1.2.3:8\xff",
	}
	uris := []string{"/internal/x?y=1", "/health", "/", "/public?/internal/", "/\xc3\xa9x", "/\xffx", "/\xef\xbf\xbd"}
	for i, cfg := range configs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			goP, asP := loadPort(t, e, "pathrule", fmt.Sprint(i), cfg, hostabi.KindAuth)
			for _, src := range sources {
				for _, uri := range uris {
					r := &req{source: src, uri: uri}
					dg, eg := goP.Authenticate(context.Background(), r)
					da, ea := asP.Authenticate(context.Background(), r)
					g := fmt.Sprintf("%v %d %q %s", dg.Allow, dg.Status, dg.Subject, errClass(eg))
					a := fmt.Sprintf("%v %d %q %s", da.Allow, da.Status, da.Subject, errClass(ea))
					if g != a {
						t.Errorf("config %s, %s %q: Go %s, AssemblyScript %s", cfg, src, uri, g, a)
					}
				}
			}
		})
	}
}

// Random addresses and prefixes built from the pieces netip's parsers
// care about; most sources and every prefix (but a few) valid for Go.
func TestPathRulePortAgreesRandom(t *testing.T) {
	e := newEngine(t)
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"0", "1", "10", "255", "256", "01", "ffff", "FFFF", "abcd", "12345", "a", "g",
		":", ":", "::", ".", ".", "%", "%eth0", "1.2.3.4", "::ffff:", "0:0", "/"}
	gen := func() string {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	allowed := 0
	for c := range 40 {
		var cidrs []string
		for len(cidrs) < 3 {
			p := gen() + "/" + strconv.Itoa(rng.IntN(20))
			if _, err := netip.ParsePrefix(p); err == nil || rng.IntN(50) == 0 {
				cidrs = append(cidrs, strconv.Quote(p))
			}
		}
		cfg := `{"allow_cidrs":[` + strings.Join(cidrs, ",") + `],"allow_paths":["/"]}`
		goP, asP := loadPort(t, e, "pathrule", fmt.Sprint(c), cfg, hostabi.KindAuth)
		for range 300 {
			src := gen()
			if rng.IntN(10) < 7 { // a valid address, bracketed as it should be
				for range 2000 {
					if a, err := netip.ParseAddr(src); err == nil {
						if a.Is6() {
							src = "[" + src + "]"
						}
						break
					}
					src = gen()
				}
			} else if rng.IntN(2) == 0 {
				src = "[" + src + "]"
			}
			src += ":" + strconv.Itoa(rng.IntN(70000))
			r := &req{source: src, uri: "/x"}
			dg, eg := goP.Authenticate(context.Background(), r)
			da, ea := asP.Authenticate(context.Background(), r)
			g := fmt.Sprintf("%v %d %q %s", dg.Allow, dg.Status, dg.Subject, errClass(eg))
			a := fmt.Sprintf("%v %d %q %s", da.Allow, da.Status, da.Subject, errClass(ea))
			if g != a {
				t.Errorf("config %s, %s: Go %s, AssemblyScript %s", cfg, src, g, a)
			}
			if dg.Allow {
				allowed++
			}
		}
	}
	if allowed < 100 {
		t.Errorf("%d of 12000 random requests allowed; the test no longer covers the allowed answers", allowed)
	}
}

func TestWebhookFilterPortAgrees(t *testing.T) {
	e := newEngine(t)
	configs := []string{
		`{"drop_codes":["SYNC_UPDATES_AVAILABLE"],"forward_to":"app"}`,
		`{"drop_codes":["SYNC_UPDATES_AVAILABLE","\u003cX\u003e"]}`,
		`{"DROP_CODES":["ERROR"],"Forward_To":"other","drop_codeſ":["X"],"forward_to":null}`,
		`{"drop_codes":[null],"forward_to":"app"}`,
		`{"drop_codes":["A","B"],"drop_codes":[null,null],"forward_to":"app"}`,
		`{"drop_codes":["A","B"],"drop_codes":[],"forward_to":""}`,
		`{"drop_codes":null,"forward_to":"a\u0000b"}`,
		`{"forward_to":"app","other":[1e400]}`,
		`null`, `-`, `{}`,
		`{"drop_codes":"X"}`, `{"drop_codes":[1]}`, `{"forward_to":1}`, `{"forward_to":["app"]}`, `[1]`, `{"a":01}`, `{"a":"\x01"}`,
	}
	events := []string{
		`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"i"}`,
		`{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE"}`,
		`{"webhook_code":"ERROR","error":{"error_code":"ITEM_LOGIN_REQUIRED","status":400,"display_message":null}}`,
		`{"webhook_code":"<X>"}`, `{"webhook_code":"\u003cX\u003e"}`, `{"webhook_code":5}`, `{"webhook_code":null}`, `{}`,
		`{"webhook_code":"A","webhook_code":"SYNC_UPDATES_AVAILABLE"}`, `{"webhook_code":"SYNC_UPDATES_AVAILABLE","webhook_code":"A"}`,
		`{"safeclose":"mine","a":1}`, `{"b":[],"a":{},"c":[{}],"d":[[[]]],"e":true,"f":false,"g":null}`,
		` {"a" : [ 1 , 2 ] } `, "\t\r\n{}\n",
		`{"z":1,"é":2,"\uffff":3,"😀":4,"\ud83d\ude00":5,"a":6,"":7,"A":8}`,
		`{"s":"\"\\\/\b\f\n\r\t\u0000\u001f\u007f\u0080<>&\u2028\u2029 \u00e9"}`,
		`{"s":"\ud800","t":"\udc00","u":"\ud800\ud800\udc00","v":"\udc00\ud800","w":"\ud800x","x":"\ud800\u0041"}`,
		"{\"s\":\"\xff\xfe\xc3\x28\xe2\x82\xf0\x9f\x98\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80 \xe2\x80\xa8\"}",
		"{\"\xff\":1,\"\xfe\":2}",
		`{"n":[0,-0,1,-1,0.0,-0.0,1.5,1e0,1E2,1e+2,1e-2,-1.25e-7,1e21,1e20,123456789012345678901234,0.000001,0.0000001]}`,
		`{"n":[9007199254740993,9007199254740992,18446744073709551616,1.7976931348623157e308,1.7976931348623158e308,4.9e-324,2e-324,3e-324,1e-400,-1e-400]}`,
		`{"n":[2.2250738585072011e-308,2.2250738585072012e-308,2.225073858507201e-308,0.1,0.2,0.3,1.0000000000000002,123.456e-10,5e-7]}`,
		// Halfway between two shortest forms: Go takes the even last digit.
		`{"n":[1255166379325248.25,197675084849323.375,1238718991267806.75,1807758812616816.25,113417740835036.875,` +
			`141004157594051.125,781120995008611.75,2012092150056561.75,746104965978789.25,1155085271161089.25]}`,
		`{"n":1e400}`, `{"n":-1.8e308}`, `{"n":1.7976931348623159e308}`, `{"n":01}`, `{"n":1.}`, `{"n":.5}`, `{"n":-}`, `{"n":1e}`, `{"n":+1}`,
		`{"n":0x10}`, `{"n":NaN}`, `{"n":Infinity}`,
		`null`, `[]`, `[1]`, `1`, `"s"`, `true`, ``, ` `, `{`, `{"a":1,}`, `{"a":1}x`, `{"a":1}{}`, `{'a':1}`, `{"a":tru}`, `{"a":nulll}`,
		"\xef\xbb\xbf{}", `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"` + "\x01" + `"}`, `{"a" 1}`, `{a:1}`,
		strings.Repeat("[", 9998) + `{"webhook_code":1}` + strings.Repeat("]", 9998),
		`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
		`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	}
	items := []hostabi.Event{
		{Tenant: "t1", User: "alice", ItemID: "i", ItemState: "ok"},
		{Tenant: "t<1>", User: "bob&\u2028\x01\"", ItemID: "", ItemState: "pending_expiration"},
		{Tenant: "t\xff", User: "é😀", ItemID: "i\x00", ItemState: ""},
	}
	// compare runs both and returns the Go plugin's error.
	compare := func(t *testing.T, goP, asP *hostabi.Plugin, cfg, body string, it hostabi.Event) error {
		t.Helper()
		it.Body = []byte(body)
		rg, eg := goP.HandleEvent(context.Background(), it)
		ra, ea := asP.HandleEvent(context.Background(), it)
		g := fmt.Sprintf("%d %q %q %s", rg.Action, rg.Payload, rg.Forward, errClass(eg))
		a := fmt.Sprintf("%d %q %q %s", ra.Action, ra.Payload, ra.Forward, errClass(ea))
		if g != a {
			b := body
			if len(b) > 200 {
				b = b[:200] + "…"
			}
			t.Errorf("config %s, event %q, item %+v:\nGo             %s\nAssemblyScript %s", cfg, b, it, g, a)
		}
		return eg
	}
	for i, cfg := range configs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			goP, asP := loadPort(t, e, "webhookfilter", fmt.Sprint(i), cfg, hostabi.KindEvent)
			for _, ev := range events {
				for _, it := range items {
					compare(t, goP, asP, cfg, ev, it)
				}
			}
		})
	}
	t.Run("random", func(t *testing.T) {
		goP, asP := loadPort(t, e, "webhookfilter", "r", "-", hostabi.KindEvent)
		// Payloads at set_payload's limit, and over it once each < is
		// written as 6 bytes.
		const frame = len(`{"a":"","safeclose":{"item_state":"ok","tenant":"t1","user":"alice"}}`)
		for _, n := range []int{abi.MaxPayload - frame, abi.MaxPayload - frame + 1} {
			if err := compare(t, goP, asP, "none", `{"a":"`+strings.Repeat("x", n)+`"}`, items[0]); (err == nil) != (n == abi.MaxPayload-frame) {
				t.Errorf("a payload of %d bytes: %v", n+frame, err)
			}
		}
		if err := compare(t, goP, asP, "none", `{"a":"`+strings.Repeat("<", abi.MaxPayload/5)+`"}`, items[0]); err == nil {
			t.Errorf("a payload of %d bytes: no error", abi.MaxPayload/5*6+frame)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 300 {
			compare(t, goP, asP, "none", randomJSON(rng, 0), items[0])
		}
		for range 200 {
			var b strings.Builder
			b.WriteString(`{"n":[`)
			for j := range 25 {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(randomNumber(rng))
			}
			b.WriteString(`]}`)
			compare(t, goP, asP, "none", b.String(), items[0])
		}
	})
}

// randomNumber returns a JSON number within float64's range: shortest
// forms, long and short forms of random doubles, exact and nearly exact
// halfway points between neighbours (rounding ties), and random digits.
func randomNumber(rng *rand.Rand) string {
	randFloat := func() float64 {
		for {
			f := math.Float64frombits(rng.Uint64())
			if !math.IsInf(f, 0) && !math.IsNaN(f) {
				return f
			}
		}
	}
	switch rng.IntN(8) {
	case 0:
		return strconv.FormatFloat(randFloat(), 'g', -1, 64)
	case 1:
		return strconv.FormatFloat(randFloat(), 'e', 16+rng.IntN(6), 64)
	case 2:
		return strconv.FormatFloat(randFloat(), 'f', -1, 64)
	case 3, 4: // a halfway point, exactly or one unit of its last digit off
		f := math.Abs(randFloat())
		if rng.IntN(3) == 0 {
			f = math.Ldexp(float64(rng.Uint64()>>11), rng.IntN(120)-60)
		}
		next := math.Nextafter(f, math.Inf(1))
		if math.IsInf(next, 0) {
			return "1"
		}
		mid := new(big.Float).SetPrec(2000).SetFloat64(f)
		mid.Add(mid, new(big.Float).SetPrec(2000).SetFloat64(next))
		mid.Quo(mid, big.NewFloat(2))
		s := mid.Text('e', 800)
		mant, exp, _ := strings.Cut(s, "e")
		mant = strings.TrimRight(mant, "0")
		switch rng.IntN(3) {
		case 1:
			mant += "1"
		case 2:
			mant = strings.TrimSuffix(mant, ".")
			if d := mant[len(mant)-1]; d > '0' && !strings.HasSuffix(mant, ".") {
				mant = mant[:len(mant)-1] + string(d-1) + "9999"
			}
		}
		mant = strings.TrimSuffix(mant, ".")
		if !strings.Contains(mant, ".") && len(mant) > 1 {
			mant = mant[:1] + "." + mant[1:]
		}
		return mant + "e" + exp
	case 5: // integers of up to 18 digits, and plain decimals
		n := rng.Int64N(int64(math.Pow10(1 + rng.IntN(18))))
		if rng.IntN(2) == 0 {
			n = -n
		}
		s := strconv.FormatInt(n, 10)
		if rng.IntN(3) == 0 {
			s += "." + strconv.Itoa(rng.IntN(1000))
		}
		return s
	}
	// Random digits, a fraction, an exponent.
	var b strings.Builder
	if rng.IntN(2) == 0 {
		b.WriteByte('-')
	}
	n := 1 + rng.IntN(40)
	for i := range n {
		d := byte('0' + rng.IntN(10))
		if i == 0 && d == '0' && n > 1 {
			d = '1'
		}
		b.WriteByte(d)
	}
	if rng.IntN(2) == 0 {
		b.WriteByte('.')
		for range 1 + rng.IntN(30) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
	}
	if rng.IntN(2) == 0 {
		fmt.Fprintf(&b, "e%d", rng.IntN(640)-340)
	}
	s := b.String()
	if f, err := strconv.ParseFloat(s, 64); err != nil || math.IsInf(f, 0) {
		return "0"
	}
	return s
}

// randomJSON returns a random JSON object (mostly valid) with repeated and
// odd keys, strings with every escape, raw multi-byte and invalid bytes.
func randomJSON(rng *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range rng.IntN(6) {
		if i > 0 {
			b.WriteByte(',')
		}
		if rng.IntN(3) == 0 {
			b.WriteString(`"webhook_code"`)
		} else {
			b.WriteString(randomString(rng))
		}
		b.WriteByte(':')
		b.WriteString(randomValue(rng, depth+1))
	}
	b.WriteByte('}')
	return b.String()
}

func randomValue(rng *rand.Rand, depth int) string {
	switch n := rng.IntN(10); {
	case n < 3:
		return randomString(rng)
	case n < 5:
		return randomNumber(rng)
	case n == 5:
		return []string{"true", "false", "null", " null "}[rng.IntN(4)]
	case n == 6 && depth < 6:
		vs := make([]string, rng.IntN(4))
		for i := range vs {
			vs[i] = randomValue(rng, depth+1)
		}
		return "[" + strings.Join(vs, ",") + "]"
	case depth < 6:
		return randomJSON(rng, depth)
	}
	return "1"
}

func randomString(rng *rand.Rand) string {
	pieces := []string{"a", "z", "A", "webhook_code", "SYNC_UPDATES_AVAILABLE", "<", ">", "&", " ", "é", "😀", "\u2028", "\u2029",
		`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0000`, `\u001F`, `\u00e9`, `\uD83D\uDE00`, `\ud800`, `\udfff`, `\uDBFF`,
		`\u2028`, `\uFFFD`, `\u003c`, "\x7f", "\x80", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xef\xbf\xbd"}
	var b strings.Builder
	b.WriteByte('"')
	for range rng.IntN(5) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteByte('"')
	return b.String()
}
