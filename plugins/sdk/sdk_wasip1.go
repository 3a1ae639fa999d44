//go:build wasip1

package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/safeclose/safeclose/hostabi/abi"
)

// Results of auth_handle.
const Allow = abi.AuthAllow

// Deny returns auth_handle's result for a denial with an HTTP status
// (400..599; 401 and 403 are the usual ones).
func Deny(status int) int64 { return abi.AuthDeny(status) }

// Results of event_handle.
const (
	Keep    = int32(abi.ActionKeep)
	Drop    = int32(abi.ActionDrop)
	Forward = int32(abi.ActionForward)
)

// JWT verification results.
const (
	JWTValid        = abi.JWTValid
	JWTMalformed    = abi.JWTMalformed
	JWTBadAlg       = abi.JWTBadAlg
	JWTUnknownKey   = abi.JWTUnknownKey
	JWTBadSignature = abi.JWTBadSignature
	JWTExpired      = abi.JWTExpired
	JWTNotYetValid  = abi.JWTNotYetValid
	JWTBadIssuer    = abi.JWTBadIssuer
	JWTBadAudience  = abi.JWTBadAudience
	JWTNoKeys       = abi.JWTNoKeys
)

// ErrRejected is returned when the host refuses a value (too long, bad
// characters, over a limit, unknown name).
var ErrRejected = errors.New("sdk: rejected by host")

var scratch = make([]byte, 2048)

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func sptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// read calls fn with the scratch buffer, growing it once if the host says
// the value is longer. The result aliases scratch until the next call.
func read(fn func(buf unsafe.Pointer, limit uint32) uint32) []byte {
	n := fn(ptr(scratch), uint32(len(scratch)))
	if int(n) > len(scratch) {
		scratch = make([]byte, n)
		n = fn(ptr(scratch), uint32(len(scratch)))
	}
	return scratch[:n]
}

func readCount(fn func(buf unsafe.Pointer, limit uint32) uint64) ([]byte, uint32) {
	c, n := abi.SplitCountLen(fn(ptr(scratch), uint32(len(scratch))))
	if int(n) > len(scratch) {
		scratch = make([]byte, n)
		c, n = abi.SplitCountLen(fn(ptr(scratch), uint32(len(scratch))))
	}
	return scratch[:n], c
}

// MethodBytes returns the request method; it aliases a shared buffer that
// the next SDK call overwrites.
func MethodBytes() []byte { return read(getMethod) }

// Method returns the request method.
func Method() string { return string(MethodBytes()) }

// URIBytes returns the request URI (path and query) without copying.
func URIBytes() []byte { return read(getURI) }

// URI returns the request URI (path and query).
func URI() string { return string(URIBytes()) }

// Path returns the URI's path, without the query.
func Path() string {
	u := URI()
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// HeaderBytes returns the first value of a request header without copying.
func HeaderBytes(name string) ([]byte, bool) {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return getHeaderValues(abi.HeaderKindRequest, sptr(name), uint32(len(name)), buf, limit)
	})
	if c == 0 {
		return nil, false
	}
	// One value is the whole list: a request header value never holds a
	// NUL (the server refuses such a request with 400), so only a list of
	// several is cut at its first separator.
	if c == 1 {
		return b, true
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], true
	}
	return b, true
}

// Header returns the first value of a request header.
func Header(name string) (string, bool) {
	b, ok := HeaderBytes(name)
	return string(b), ok
}

// HeaderValues returns every value of a request header.
func HeaderValues(name string) []string {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return getHeaderValues(abi.HeaderKindRequest, sptr(name), uint32(len(name)), buf, limit)
	})
	return splitNUL(b, c)
}

// HeaderNames returns the request's header names.
func HeaderNames() []string {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return getHeaderNames(abi.HeaderKindRequest, buf, limit)
	})
	return splitNUL(b, c)
}

func splitNUL(b []byte, c uint32) []string {
	if c == 0 {
		return nil
	}
	out := make([]string, 0, c)
	for _, s := range strings.Split(string(b), "\x00") {
		if len(out) < int(c) {
			out = append(out, s)
		}
	}
	return out
}

// Bearer returns the token of an "Authorization: Bearer" header.
func Bearer() (string, bool) {
	b, ok := BearerBytes()
	return string(b), ok
}

// BearerBytes is Bearer without copying: the token aliases a shared buffer
// that the next SDK call overwrites (pass it straight to VerifyJWTBytes).
func BearerBytes() ([]byte, bool) {
	b, ok := HeaderBytes("Authorization")
	if !ok || len(b) < 7 || !bytes.EqualFold(b[:7], []byte("bearer ")) {
		return nil, false
	}
	return bytes.TrimSpace(b[7:]), true
}

// Cookie returns a request cookie's value.
func Cookie(name string) (string, bool) {
	b, ok := CookieBytes(name)
	return string(b), ok
}

// CookieBytes is Cookie without copying: the value aliases a shared buffer
// that the next SDK call overwrites.
func CookieBytes(name string) ([]byte, bool) {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return getCookie(sptr(name), uint32(len(name)), buf, limit)
	})
	return b, c > 0
}

// SourceAddr returns the client's "ip:port".
func SourceAddr() string { return string(read(getSourceAddr)) }

// Body returns up to the configured body_limit bytes of the request body;
// it needs the "body" capability.
func Body() []byte { return append([]byte(nil), read(getBody)...) }

// SetSubject sets the authenticated user's id (at most 256 printable bytes,
// no space or tab at either end).
func SetSubject(s string) error {
	if setSubject(sptr(s), uint32(len(s))) != abi.StatusOK {
		return ErrRejected
	}
	return nil
}

// SetSubjectBytes is SetSubject for bytes, such as JWTClaimBytes' result;
// the host copies them.
func SetSubjectBytes(b []byte) error {
	if setSubject(ptr(b), uint32(len(b))) != abi.StatusOK {
		return ErrRejected
	}
	return nil
}

// SetClaim adds a claim passed upstream as X-Safeclose-Claim-<name>. Names
// are [a-z0-9_-], at most 64 bytes; values printable, at most 1 KiB, no
// space or tab at either end; at most 16 claims.
func SetClaim(name, value string) error {
	if setClaim(sptr(name), uint32(len(name)), sptr(value), uint32(len(value))) != abi.StatusOK {
		return ErrRejected
	}
	return nil
}

// Config returns the plugin's config from the tenant's YAML, as JSON; it
// needs the "config" capability.
func Config() []byte { return append([]byte(nil), read(getConfig)...) }

// DecodeConfig unmarshals Config into v.
func DecodeConfig(v any) error {
	c := Config()
	if len(c) == 0 {
		return nil
	}
	return json.Unmarshal(c, v)
}

// Level is a log level.
type Level int32

// Log levels.
const (
	LevelDebug = Level(abi.LogDebug)
	LevelInfo  = Level(abi.LogInfo)
	LevelWarn  = Level(abi.LogWarn)
	LevelError = Level(abi.LogError)
)

// Log writes a line to the proxy's log, tagged with tenant and plugin and
// rate-limited by the host; it needs the "log" capability.
func Log(level Level, msg string) {
	if logEnabled(int32(level)) != 0 {
		logMsg(int32(level), sptr(msg), uint32(len(msg)))
	}
}

// Now returns the host's wall clock; it needs the "clock" capability.
func Now() time.Time { return time.Unix(0, now()) }

// VerifyJWT checks a compact JWT in the host against the plugin's keys
// (HMAC secrets from the tenant config, or its JWKS), including exp, nbf
// and the configured issuer and audience. It returns JWTValid or the
// reason; it needs the "crypto" capability.
func VerifyJWT(token string) int32 {
	return jwtVerify(sptr(token), uint32(len(token)))
}

// VerifyJWTBytes is VerifyJWT for a token in bytes, such as BearerBytes'
// result, without copying it.
func VerifyJWTBytes(token []byte) int32 {
	return jwtVerify(ptr(token), uint32(len(token)))
}

// JWTClaim returns a claim of the token last verified by VerifyJWT in this
// call (strings as is, numbers and booleans as JSON text).
func JWTClaim(name string) (string, bool) {
	b, ok := JWTClaimBytes(name)
	return string(b), ok
}

// JWTClaimBytes is JWTClaim without copying: the value aliases a shared
// buffer that the next SDK call overwrites.
func JWTClaimBytes(name string) ([]byte, bool) {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return jwtClaim(sptr(name), uint32(len(name)), buf, limit)
	})
	return b, c > 0
}

// HMACSHA256Verify reports whether mac is HMAC-SHA256(secret, msg) for the
// named secret of the plugin config; ErrRejected if no such secret.
func HMACSHA256Verify(secret string, msg, mac []byte) (bool, error) {
	switch hmacSHA256Verify(sptr(secret), uint32(len(secret)), ptr(msg), uint32(len(msg)), ptr(mac), uint32(len(mac))) {
	case abi.HMACValid:
		return true, nil
	case abi.HMACInvalid:
		return false, nil
	default:
		return false, ErrRejected
	}
}

// SHA256 hashes msg in the host. msg may alias the SDK's buffer (a
// BearerBytes result): the host reads it before writing the sum there.
func SHA256(msg []byte) (sum [32]byte) {
	// Through scratch, not &sum: a pointer passed to an import escapes, so
	// &sum would put sum on the guest heap on every call.
	sha256Sum(ptr(msg), uint32(len(msg)), ptr(scratch), 32)
	copy(sum[:], scratch)
	return sum
}

// ErrUnavailable is returned by the KV functions when the host's store
// failed (for example its database is down); nothing is known to be written.
var ErrUnavailable = errors.New("sdk: key/value store unavailable")

// KVGet reads the tenant-scoped key/value store; it needs the "kv"
// capability. It fails closed: when the store is unavailable it panics, so
// the call traps (an auth plugin's request gets 503, an event is retried).
// A plugin that wants to decide for itself uses KVLookup.
func KVGet(key string) ([]byte, bool) {
	v, ok, err := KVLookup(key)
	if err != nil {
		panic(err)
	}
	return v, ok
}

// KVLookup is KVGet that reports an unavailable store as ErrUnavailable
// instead of failing the call.
func KVLookup(key string) ([]byte, bool, error) {
	b, c := readCount(func(buf unsafe.Pointer, limit uint32) uint64 {
		return kvGet(sptr(key), uint32(len(key)), buf, limit)
	})
	switch c {
	case 0:
		return nil, false, nil
	case abi.KVUnavailable:
		return nil, false, ErrUnavailable
	}
	return append([]byte(nil), b...), true, nil
}

// KVSet stores a value (key ≤ 128 bytes, value ≤ 4 KiB) for ttl (0: no
// expiry, whole seconds). It returns ErrRejected for a bad key or value or
// a full store, and ErrUnavailable when the store failed.
func KVSet(key string, val []byte, ttl time.Duration) error {
	switch kvSet(sptr(key), uint32(len(key)), ptr(val), uint32(len(val)), uint32(ttl/time.Second)) {
	case abi.StatusOK:
		return nil
	case abi.StatusUnavailable:
		return ErrUnavailable
	}
	return ErrRejected
}

// KVDelete removes a key; it returns ErrUnavailable when the store failed.
func KVDelete(key string) error {
	if kvDelete(sptr(key), uint32(len(key))) == abi.StatusUnavailable {
		return ErrUnavailable
	}
	return nil
}

// Event returns the verified Plaid webhook body (event plugins).
func Event() []byte { return append([]byte(nil), read(getEvent)...) }

// ItemContext is what the host knows about the event's item. It never
// contains the access token.
type ItemContext struct {
	Tenant    string `json:"tenant"`
	User      string `json:"user"`
	ItemID    string `json:"item_id"`
	ItemState string `json:"item_state"`
}

// Item returns the event's item context (event plugins).
func Item() (ItemContext, error) {
	var c ItemContext
	err := json.Unmarshal(read(getItemContext), &c)
	return c, err
}

// SetPayload replaces the body forwarded to the tenant's destinations
// (at most 256 KiB).
func SetPayload(b []byte) error {
	if setPayload(ptr(b), uint32(len(b))) != abi.StatusOK {
		return ErrRejected
	}
	return nil
}

// ForwardTo names a destination from the tenant config; with the Forward
// action only named destinations receive the event.
func ForwardTo(name string) error {
	if addForward(sptr(name), uint32(len(name))) != abi.StatusOK {
		return ErrRejected
	}
	return nil
}
