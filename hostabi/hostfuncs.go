package hostabi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/safeclose/safeclose/hostabi/abi"
)

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// kindAny marks host functions both plugin kinds may import.
const kindAny = -1

type hostFunc struct {
	params, results []api.ValueType
	cap             string // capability needed; "" for none
	kind            int    // Kind that may import it, or kindAny
	fn              api.GoModuleFunc
}

// hostFuncs is the safeclose_v1 module. It is built once; functions find
// their instance through the call's context.
var hostFuncs = map[string]hostFunc{
	abi.FuncGetMethod:       {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindAuth), hGetMethod},
	abi.FuncGetURI:          {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindAuth), hGetURI},
	abi.FuncGetHeaderNames:  {[]api.ValueType{i32, i32, i32}, []api.ValueType{i64}, "", int(KindAuth), hGetHeaderNames},
	abi.FuncGetHeaderValues: {[]api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64}, "", int(KindAuth), hGetHeaderValues},
	abi.FuncGetCookie:       {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}, "", int(KindAuth), hGetCookie},
	abi.FuncGetSourceAddr:   {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindAuth), hGetSourceAddr},
	abi.FuncGetBody:         {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "body", int(KindAuth), hGetBody},
	abi.FuncSetSubject:      {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindAuth), hSetSubject},
	abi.FuncSetClaim:        {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, "", int(KindAuth), hSetClaim},

	abi.FuncGetConfig:  {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "config", kindAny, hGetConfig},
	abi.FuncLogEnabled: {[]api.ValueType{i32}, []api.ValueType{i32}, "log", kindAny, hLogEnabled},
	abi.FuncLog:        {[]api.ValueType{i32, i32, i32}, nil, "log", kindAny, hLog},
	abi.FuncNow:        {nil, []api.ValueType{i64}, "clock", kindAny, hNow},

	abi.FuncJWTVerify:        {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "crypto", kindAny, hJWTVerify},
	abi.FuncJWTClaim:         {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}, "crypto", kindAny, hJWTClaim},
	abi.FuncHMACSHA256Verify: {[]api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}, "crypto", kindAny, hHMACVerify},
	abi.FuncSHA256:           {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, "crypto", kindAny, hSHA256},

	abi.FuncKVGet:    {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}, "kv", kindAny, hKVGet},
	abi.FuncKVSet:    {[]api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, "kv", kindAny, hKVSet},
	abi.FuncKVDelete: {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "kv", kindAny, hKVDelete},

	abi.FuncGetEvent:       {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindEvent), hGetEvent},
	abi.FuncGetItemContext: {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindEvent), hGetItemContext},
	abi.FuncSetPayload:     {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindEvent), hSetPayload},
	abi.FuncAddForward:     {[]api.ValueType{i32, i32}, []api.ValueType{i32}, "", int(KindEvent), hAddForward},
}

// inst finds the instance a host call belongs to. A call outside a plugin
// call (impossible through Load) is a guest fault.
func inst(ctx context.Context) *instance {
	in, _ := ctx.Value(instKey{}).(*instance)
	if in == nil {
		fault("host function called outside a plugin call")
	}
	return in
}

// read returns a view of guest memory; out of range is a guest fault that
// traps the call.
func (in *instance) read(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	b, ok := in.mem.Read(ptr, n)
	if !ok {
		fault("pointer out of range")
	}
	return b
}

// put implements the (buf, limit) -> len convention: v is written only
// when it fits.
func (in *instance) put(buf, limit uint32, v []byte) uint32 {
	n := uint32(len(v))
	if n <= limit && n > 0 && !in.mem.Write(buf, v) {
		fault("buffer out of range")
	}
	return n
}

func (in *instance) request() Request {
	if in.req == nil {
		fault("request accessor called outside auth_handle")
	}
	return in.req
}

func (in *instance) event() *Event {
	if in.ev == nil {
		fault("event accessor called outside event_handle")
	}
	return in.ev
}

func u32(v uint64) uint32 { return uint32(v) }

func hGetMethod(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	v := in.request().Method()
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), v))
	in.record(opMethod, nil, v, 0)
}

func hGetURI(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	v := in.request().URI()
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), v))
	in.record(opURI, nil, v, 0)
}

func hGetSourceAddr(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	v := in.request().SourceAddr()
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), v))
	in.record(opSource, nil, v, 0)
}

func hGetBody(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	b := in.request().Body()
	if len(b) > in.p.opts.BodyLimit {
		b = b[:in.p.opts.BodyLimit]
	}
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), b))
	in.record(opBody, nil, b, 0)
}

// visitAll builds a list (or cookie) answer host-side, then writes it into
// the guest's buffer only if it fits whole: the (buf, limit) -> len rule.
func (in *instance) visitAll(mode byte, name []byte, buf, limit uint32) uint64 {
	in.hv.run(in.request(), mode, name)
	in.hv.name = nil
	n := uint32(len(in.hv.out))
	if n > 0 && n <= limit && !in.mem.Write(buf, in.hv.out) {
		fault("buffer out of range")
	}
	return abi.CountLen(in.hv.count, n)
}

func hGetHeaderNames(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	if u32(s[0]) != abi.HeaderKindRequest {
		s[0] = 0
		return
	}
	s[0] = in.visitAll(opHeaderNames, nil, u32(s[1]), u32(s[2]))
	in.record(opHeaderNames, nil, in.hv.out, in.hv.count)
}

func hGetHeaderValues(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	if u32(s[0]) != abi.HeaderKindRequest {
		s[0] = 0
		return
	}
	name := in.read(u32(s[1]), u32(s[2]))
	s[0] = in.visitAll(opHeaderValues, name, u32(s[3]), u32(s[4]))
	in.record(opHeaderValues, name, in.hv.out, in.hv.count)
}

func hGetCookie(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	name := in.read(u32(s[0]), u32(s[1]))
	s[0] = in.visitAll(opCookie, name, u32(s[2]), u32(s[3]))
	in.record(opCookie, name, in.hv.out, in.hv.count)
}

// printable reports whether b is safe in an HTTP header value: visible
// ASCII, space and tab only, so no header injection through identities.
func printable(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// headerValue reports whether b reaches the upstream unchanged as a header
// value: printable, and no space or tab at either end, which HTTP parsers
// strip. A subject "alice " otherwise reached the upstream as "alice",
// another user, while the store kept it apart.
func headerValue(b []byte) bool {
	if len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		return false
	}
	return printable(b)
}

func claimName(b []byte) bool {
	if len(b) == 0 || len(b) > abi.MaxClaimName {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func hSetSubject(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.request()
	v := in.read(u32(s[0]), u32(s[1]))
	if len(v) == 0 || len(v) > abi.MaxSubject || !headerValue(v) {
		s[0] = uint64(uint32(abi.StatusInvalid))
		return
	}
	in.subject = append(in.subject[:0], v...)
	in.subjectSet = true
	s[0] = uint64(abi.StatusOK)
}

func hSetClaim(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.request()
	name := in.read(u32(s[0]), u32(s[1]))
	val := in.read(u32(s[2]), u32(s[3]))
	switch {
	case !claimName(name) || len(val) > abi.MaxClaimValue || !headerValue(val):
		s[0] = uint64(uint32(abi.StatusInvalid))
	case len(in.claims) >= abi.MaxClaims:
		s[0] = uint64(uint32(abi.StatusQuota))
	default:
		in.claims = append(in.claims, Claim{Name: string(name), Value: string(val)})
		s[0] = uint64(abi.StatusOK)
	}
}

func hGetConfig(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), in.p.opts.Config))
}

func hLogEnabled(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	if in.p.log.Enabled(ctx, slogLevel(int32(u32(s[0])))) {
		s[0] = 1
	} else {
		s[0] = 0
	}
}

func slogLevel(l int32) slog.Level {
	switch {
	case l <= abi.LogDebug:
		return slog.LevelDebug
	case l == abi.LogInfo:
		return slog.LevelInfo
	case l == abi.LogWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func hLog(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	msg := in.read(u32(s[1]), u32(s[2]))
	if len(msg) > abi.MaxLogLine {
		msg = msg[:abi.MaxLogLine]
	}
	if dropped, ok := in.p.logs.Allow(in.p.e.now()); ok {
		lvl := slogLevel(int32(u32(s[0])))
		if dropped > 0 {
			in.p.log.Log(ctx, lvl, string(msg), "source", "plugin", "dropped_before", dropped)
		} else {
			in.p.log.Log(ctx, lvl, string(msg), "source", "plugin")
		}
	}
}

func hNow(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.uncacheable = true
	s[0] = uint64(in.p.e.now().UnixNano())
}

func hJWTVerify(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	tok := in.read(u32(s[0]), u32(s[1]))
	e, code := in.p.jwt.verify(tok)
	if code == abi.JWTValid {
		in.jwtTok = e
		if e.exp != 0 {
			if exp := time.Unix(e.exp, 0); in.jwtExp.IsZero() || exp.Before(in.jwtExp) {
				in.jwtExp = exp
			}
		}
	} else {
		in.jwtTok = nil
	}
	s[0] = uint64(uint32(code))
}

func hJWTClaim(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	name := in.read(u32(s[0]), u32(s[1]))
	if in.jwtTok == nil {
		s[0] = 0
		return
	}
	v, ok := in.jwtTok.claims[string(name)]
	if !ok {
		s[0] = 0
		return
	}
	s[0] = abi.CountLen(1, in.put(u32(s[2]), u32(s[3]), v))
}

func hHMACVerify(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	key, ok := in.p.opts.Secrets[string(in.read(u32(s[0]), u32(s[1])))]
	if !ok {
		noKey := abi.HMACNoKey
		s[0] = uint64(uint32(noKey))
		return
	}
	msg := in.read(u32(s[2]), u32(s[3]))
	mac := in.read(u32(s[4]), u32(s[5]))
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	var sum [sha256.Size]byte
	if hmac.Equal(h.Sum(sum[:0]), mac) {
		s[0] = uint64(uint32(abi.HMACValid))
	} else {
		s[0] = uint64(uint32(abi.HMACInvalid))
	}
}

func hSHA256(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	sum := sha256.Sum256(in.read(u32(s[0]), u32(s[1])))
	s[0] = uint64(in.put(u32(s[2]), u32(s[3]), sum[:]))
}

func hKVGet(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.uncacheable = true
	key := in.read(u32(s[0]), u32(s[1]))
	if len(key) == 0 || len(key) > abi.MaxKVKey {
		s[0] = 0 // no such key can exist
		return
	}
	v, ok, err := in.p.kv.KVGet(ctx, in.p.opts.Tenant, key)
	switch {
	case err != nil:
		in.kvFailed(ctx, abi.FuncKVGet, err)
		s[0] = abi.CountLen(abi.KVUnavailable, 0)
	case !ok:
		s[0] = 0
	default:
		s[0] = abi.CountLen(1, in.put(u32(s[2]), u32(s[3]), v))
	}
}

func hKVSet(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.uncacheable = true
	key := in.read(u32(s[0]), u32(s[1]))
	val := in.read(u32(s[2]), u32(s[3]))
	if len(key) == 0 || len(key) > abi.MaxKVKey || len(val) > abi.MaxKVValue {
		s[0] = uint64(uint32(abi.StatusInvalid))
		return
	}
	ok, err := in.p.kv.KVSet(ctx, in.p.opts.Tenant, key, val, time.Duration(u32(s[4]))*time.Second, abi.MaxKVEntries)
	switch {
	case err != nil:
		in.kvFailed(ctx, abi.FuncKVSet, err)
		s[0] = uint64(uint32(abi.StatusUnavailable))
	case !ok:
		s[0] = uint64(uint32(abi.StatusQuota))
	default:
		s[0] = uint64(abi.StatusOK)
	}
}

func hKVDelete(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.uncacheable = true
	key := in.read(u32(s[0]), u32(s[1]))
	s[0] = uint64(abi.StatusOK)
	if len(key) == 0 || len(key) > abi.MaxKVKey {
		return // no such key can exist
	}
	if err := in.p.kv.KVDelete(ctx, in.p.opts.Tenant, key); err != nil {
		in.kvFailed(ctx, abi.FuncKVDelete, err)
		s[0] = uint64(uint32(abi.StatusUnavailable))
	}
}

// kvFailed logs a KV store failure (rate-limited, engine-wide); the guest
// gets abi.StatusUnavailable and decides.
func (in *instance) kvFailed(ctx context.Context, fn string, err error) {
	if dropped, ok := in.p.e.kvLogs.Allow(time.Now()); ok {
		in.p.log.Log(ctx, slog.LevelWarn, "plugin key/value store unavailable; the plugin was told so",
			"func", fn, "err", err, "dropped_before", dropped)
	}
}

func hGetEvent(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), in.event().Body))
}

func hGetItemContext(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	ev := in.event()
	b, _ := json.Marshal(struct {
		Tenant    string `json:"tenant"`
		User      string `json:"user"`
		ItemID    string `json:"item_id"`
		ItemState string `json:"item_state"`
	}{ev.Tenant, ev.User, ev.ItemID, ev.ItemState})
	s[0] = uint64(in.put(u32(s[0]), u32(s[1]), b))
}

func hSetPayload(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.event()
	v := in.read(u32(s[0]), u32(s[1]))
	if len(v) > abi.MaxPayload {
		s[0] = uint64(uint32(abi.StatusQuota))
		return
	}
	in.payload = append([]byte{}, v...)
	in.payloadSet = true
	s[0] = uint64(abi.StatusOK)
}

func hAddForward(ctx context.Context, _ api.Module, s []uint64) {
	in := inst(ctx)
	in.event()
	in.named = true
	v := in.read(u32(s[0]), u32(s[1]))
	switch {
	case len(v) == 0 || len(v) > 64 || !printable(v):
		s[0] = uint64(uint32(abi.StatusInvalid))
	case len(in.forward) >= abi.MaxForwards:
		s[0] = uint64(uint32(abi.StatusQuota))
	default:
		in.forward = append(in.forward, string(v))
		s[0] = uint64(abi.StatusOK)
	}
}
