// Host functions of the Safeclose ABI safeclose_v1 (hostabi/ABI.md §4),
// declared as the host defines them: every parameter an i32, pointers are
// offsets into the exported memory. A function the program never calls is
// not imported, so the SDK forces no capability.

@external("safeclose_v1", "get_method")
export declare function getMethod(buf: usize, limit: u32): u32;
@external("safeclose_v1", "get_uri")
export declare function getURI(buf: usize, limit: u32): u32;
@external("safeclose_v1", "get_header_names")
export declare function getHeaderNames(kind: u32, buf: usize, limit: u32): u64;
@external("safeclose_v1", "get_header_values")
export declare function getHeaderValues(kind: u32, name: usize, nameLen: u32, buf: usize, limit: u32): u64;
@external("safeclose_v1", "get_cookie")
export declare function getCookie(name: usize, nameLen: u32, buf: usize, limit: u32): u64;
@external("safeclose_v1", "get_source_addr")
export declare function getSourceAddr(buf: usize, limit: u32): u32;
@external("safeclose_v1", "get_body")
export declare function getBody(buf: usize, limit: u32): u32;
@external("safeclose_v1", "set_subject")
export declare function setSubject(ptr: usize, len: u32): i32;
@external("safeclose_v1", "set_claim")
export declare function setClaim(name: usize, nameLen: u32, value: usize, valueLen: u32): i32;
@external("safeclose_v1", "get_config")
export declare function getConfig(buf: usize, limit: u32): u32;
@external("safeclose_v1", "log_enabled")
export declare function logEnabled(level: i32): u32;
@external("safeclose_v1", "log")
export declare function log(level: i32, ptr: usize, len: u32): void;
@external("safeclose_v1", "now")
export declare function now(): i64;
@external("safeclose_v1", "jwt_verify")
export declare function jwtVerify(token: usize, len: u32): i32;
@external("safeclose_v1", "jwt_claim")
export declare function jwtClaim(name: usize, nameLen: u32, buf: usize, limit: u32): u64;
@external("safeclose_v1", "hmac_sha256_verify")
export declare function hmacSHA256Verify(key: usize, keyLen: u32, msg: usize, msgLen: u32, mac: usize, macLen: u32): i32;
@external("safeclose_v1", "sha256")
export declare function sha256(msg: usize, len: u32, buf: usize, limit: u32): u32;
@external("safeclose_v1", "kv_get")
export declare function kvGet(key: usize, keyLen: u32, buf: usize, limit: u32): u64;
@external("safeclose_v1", "kv_set")
export declare function kvSet(key: usize, keyLen: u32, val: usize, valLen: u32, ttlSeconds: u32): i32;
@external("safeclose_v1", "kv_delete")
export declare function kvDelete(key: usize, keyLen: u32): i32;
@external("safeclose_v1", "get_event")
export declare function getEvent(buf: usize, limit: u32): u32;
@external("safeclose_v1", "get_item_context")
export declare function getItemContext(buf: usize, limit: u32): u32;
@external("safeclose_v1", "set_payload")
export declare function setPayload(ptr: usize, len: u32): i32;
@external("safeclose_v1", "add_forward")
export declare function addForward(name: usize, nameLen: u32): i32;
