// Package abi holds the Safeclose guest↔host contract alone: the import
// module name, the host function and export names, and the encodings of
// their results. It imports only the standard library so that guest SDKs
// (plugins/sdk) can share it with the host (hostabi). ABI.md in the parent
// directory is the normative description.
package abi

// ModuleName is the Wasm import module every host function lives in. The
// suffix is the ABI version: an incompatible change gets a new module name,
// so an old plugin either links against the version it was built for or is
// refused at load with a clear error.
const ModuleName = "safeclose_v1"

// Exports a plugin provides.
const (
	// ExportAuth is auth_handle() -> i64 (see AuthAllow and AuthDeny).
	ExportAuth = "auth_handle"
	// ExportEvent is event_handle() -> i32 (an Action).
	ExportEvent = "event_handle"
	// ExportInitialize is the reactor start function of Go c-shared guests;
	// the host calls it once per instance when present.
	ExportInitialize = "_initialize"
	// ExportMemory is the guest's linear memory; required.
	ExportMemory = "memory"
)

// Host functions in ModuleName. Reads follow http-wasm's (buf, buf_limit) ->
// len convention: the host writes only when len <= buf_limit, so a guest
// whose buffer was too small calls again with len bytes.
const (
	FuncGetMethod       = "get_method"        // (buf, limit) -> len
	FuncGetURI          = "get_uri"           // (buf, limit) -> len
	FuncGetHeaderNames  = "get_header_names"  // (kind, buf, limit) -> count<<32|len
	FuncGetHeaderValues = "get_header_values" // (kind, name, name_len, buf, limit) -> count<<32|len
	FuncGetCookie       = "get_cookie"        // (name, name_len, buf, limit) -> found<<32|len
	FuncGetSourceAddr   = "get_source_addr"   // (buf, limit) -> len
	FuncGetBody         = "get_body"          // (buf, limit) -> len          [cap body]
	FuncSetSubject      = "set_subject"       // (ptr, len) -> status
	FuncSetClaim        = "set_claim"         // (name, name_len, value, value_len) -> status

	FuncGetConfig  = "get_config"  // (buf, limit) -> len                [cap config]
	FuncLogEnabled = "log_enabled" // (level) -> 0|1                     [cap log]
	FuncLog        = "log"         // (level, ptr, len)                  [cap log]
	FuncNow        = "now"         // () -> unix nanoseconds             [cap clock]

	FuncJWTVerify        = "jwt_verify"         // (token, token_len) -> JWT status     [cap crypto]
	FuncJWTClaim         = "jwt_claim"          // (name, name_len, buf, limit) -> found<<32|len [cap crypto]
	FuncHMACSHA256Verify = "hmac_sha256_verify" // (key, key_len, msg, msg_len, mac, mac_len) -> status [cap crypto]
	FuncSHA256           = "sha256"             // (msg, msg_len, buf, limit) -> len    [cap crypto]

	FuncKVGet    = "kv_get"    // (key, key_len, buf, limit) -> found<<32|len [cap kv]
	FuncKVSet    = "kv_set"    // (key, key_len, val, val_len, ttl_seconds) -> status [cap kv]
	FuncKVDelete = "kv_delete" // (key, key_len) -> status [cap kv]

	FuncGetEvent       = "get_event"        // (buf, limit) -> len   [event plugins]
	FuncGetItemContext = "get_item_context" // (buf, limit) -> len   [event plugins]
	FuncSetPayload     = "set_payload"      // (ptr, len) -> status  [event plugins]
	FuncAddForward     = "add_forward"      // (name, name_len) -> status [event plugins]
)

// HeaderKindRequest is the only header kind auth plugins read (http-wasm's
// header_kind 0).
const HeaderKindRequest uint32 = 0

// Log levels, as in http-wasm.
const (
	LogDebug int32 = -1
	LogInfo  int32 = 0
	LogWarn  int32 = 1
	LogError int32 = 2
)

// Status results of setters and checks.
const (
	StatusOK       int32 = 0
	StatusInvalid  int32 = 1 // value rejected: too long, bad characters, too many
	StatusQuota    int32 = 2 // a size or count limit was reached
	StatusNotFound int32 = 3 // unknown key name, destination or secret
	// StatusUnavailable is kv_set's and kv_delete's answer when the store
	// holding the key/value data failed (the database is down): nothing
	// is known to be written, and the guest decides what to do.
	StatusUnavailable int32 = 4
)

// KVUnavailable is the found half of kv_get's found<<32|len when the store
// failed: neither found (1) nor absent (0).
const KVUnavailable uint32 = 2

// JWT verification results from jwt_verify.
const (
	JWTValid        int32 = 0
	JWTMalformed    int32 = 1
	JWTBadAlg       int32 = 2 // alg not allowed (none, or not matching the key)
	JWTUnknownKey   int32 = 3
	JWTBadSignature int32 = 4
	JWTExpired      int32 = 5
	JWTNotYetValid  int32 = 6
	JWTBadIssuer    int32 = 7
	JWTBadAudience  int32 = 8
	JWTNoKeys       int32 = 9 // the plugin has no verification keys configured
)

// HMAC results from hmac_sha256_verify.
const (
	HMACValid   int32 = 1
	HMACInvalid int32 = 0
	HMACNoKey   int32 = -1
)

// Action is event_handle's result.
type Action int32

// Event actions.
const (
	ActionKeep    Action = 0 // process as configured: forward to every destination
	ActionDrop    Action = 1 // stop here: nothing is forwarded
	ActionForward Action = 2 // forward to the destinations named with add_forward (all if it was never called; ABI.md §4)
)

// AuthAllow is auth_handle's result for "allow"; the guest must have called
// set_subject.
const AuthAllow int64 = 0

// AuthDeny encodes a denial with an HTTP status in 400..599.
func AuthDeny(status int) int64 { return int64(uint32(status)) }

// AuthStatus decodes auth_handle's result: allow, or the deny status.
// ok is false when the value is neither (the host fails closed).
func AuthStatus(v int64) (allow bool, status int, ok bool) {
	if v == AuthAllow {
		return true, 0, true
	}
	if v >= 400 && v <= 599 {
		return false, int(v), true
	}
	return false, 0, false
}

// CountLen packs the (count, len) pair returned by list reads.
func CountLen(count, n uint32) uint64 { return uint64(count)<<32 | uint64(n) }

// SplitCountLen unpacks CountLen.
func SplitCountLen(v uint64) (count, n uint32) { return uint32(v >> 32), uint32(v) }

// Limits the host enforces on what a guest sets.
const (
	MaxSubject    = 256
	MaxClaims     = 16
	MaxClaimName  = 64
	MaxClaimValue = 1024
	MaxPayload    = 256 << 10
	MaxForwards   = 16
	MaxKVKey      = 128
	MaxKVValue    = 4096
	MaxKVEntries  = 1024
	MaxLogLine    = 1024
)
