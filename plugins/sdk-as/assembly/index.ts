// AssemblyScript SDK for Safeclose plugins: the host ABI safeclose_v1
// (hostabi/ABI.md) with the Go SDK's helpers (plugins/sdk), in camelCase.
//
// Strings cross the ABI as UTF-8. The `…Bytes` forms return a Bytes view of
// the SDK's one read buffer, valid until the next SDK call, and allocate
// nothing: a request path that uses only them (and string literals as names)
// never runs the garbage collector. The string forms decode a copy.
//
// Build a plugin (a reactor: exports `memory`, `_initialize`, the handler):
//
//	asc plugin.ts -o plugin.wasm -O3 --runtime incremental \
//	  --exportStart _initialize --use abort=<this dir>/index/abort
//
// plugins/build.sh does this for plugins/examples-as/*.
import * as host from "./imports";

export { JSONKind, JSONValue, parseJSON, quoteJSON } from "./json";

// auth_handle results: allow (after setSubject), or deny with an HTTP
// status (400..599; 401 and 403 are the usual ones).
export const Allow: i64 = 0;

export function deny(status: i32): i64 {
  return <i64><u32>status;
}

// event_handle results.
export const Keep: i32 = 0;
export const Drop: i32 = 1;
export const Forward: i32 = 2;

// jwt_verify results (ABI.md §4.3).
export const JWTValid: i32 = 0;
export const JWTMalformed: i32 = 1;
export const JWTBadAlg: i32 = 2;
export const JWTUnknownKey: i32 = 3;
export const JWTBadSignature: i32 = 4;
export const JWTExpired: i32 = 5;
export const JWTNotYetValid: i32 = 6;
export const JWTBadIssuer: i32 = 7;
export const JWTBadAudience: i32 = 8;
export const JWTNoKeys: i32 = 9;

// Setter statuses (ABI.md §2).
export const StatusOK: i32 = 0;
export const StatusInvalid: i32 = 1;
export const StatusQuota: i32 = 2;
export const StatusNotFound: i32 = 3;
export const StatusUnavailable: i32 = 4;

// Log levels.
export const LevelDebug: i32 = -1;
export const LevelInfo: i32 = 0;
export const LevelWarn: i32 = 1;
export const LevelError: i32 = 2;

const headerKindRequest: u32 = 0;
const kvUnavailable: u32 = 2;

// abort replaces AssemblyScript's default, which would import env.abort
// (a module the host refuses): a failed assertion, a bounds check or an
// uncaught throw traps, so the call fails closed (ABI.md §6).
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}

// Bytes is a view of guest memory: [ptr, ptr+len). A view returned by the
// SDK aliases its read buffer until the next SDK call.
export class Bytes {
  constructor(public ptr: usize = 0, public len: i32 = 0) {}

  // toString decodes a copy (UTF-8).
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, <usize>this.len);
  }

  // copy returns the bytes in a new array.
  copy(): Uint8Array {
    const a = new Uint8Array(this.len);
    memory.copy(a.dataStart, this.ptr, <usize>this.len);
    return a;
  }

  at(i: i32): u8 {
    if (<u32>i >= <u32>this.len) unreachable();
    return load<u8>(this.ptr + <usize>i);
  }

  // equals compares with s's UTF-8 bytes without allocating.
  equals(s: string): bool {
    const n = encode(s, 1);
    return n == this.len && memory.compare(this.ptr, args[1], <usize>n) == 0;
  }
}

// The read buffer (grown when the host reports a longer value) and two
// argument buffers for strings passed to the host, all outside the GC heap.
let buf: usize = 0;
let bufCap: u32 = 0;
const args: StaticArray<usize> = [0, 0];
const argsCap: StaticArray<u32> = [0, 0];
// The views the …Bytes forms return.
const view = new Bytes();
const argView = new Bytes();

function grow(n: u32): void {
  if (n <= bufCap) return;
  let c = max<u32>(n, 2048);
  buf = bufCap == 0 ? heap.alloc(<usize>c) : heap.realloc(buf, <usize>c);
  bufCap = c;
}

// encode writes s as UTF-8 into argument buffer slot and returns its length.
function encode(s: string, slot: i32): i32 {
  const n = String.UTF8.byteLength(s);
  if (<u32>n > unchecked(argsCap[slot])) {
    const c = max<u32>(<u32>n, 256);
    const p = unchecked(argsCap[slot]) == 0 ? heap.alloc(<usize>c) : heap.realloc(unchecked(args[slot]), <usize>c);
    unchecked((args[slot] = p));
    unchecked((argsCap[slot] = c));
  }
  String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, unchecked(args[slot]));
  return n;
}

function ensureBuf(): void {
  if (bufCap == 0) grow(2048);
}

// lenView views the first n bytes of the read buffer. The host writes a
// value only when it fits, and a retry asks with len bytes: a length still
// over the buffer breaks the ABI, and the call fails closed.
function lenView(n: u32): Bytes {
  if (n > bufCap) unreachable();
  view.ptr = buf;
  view.len = <i32>n;
  return view;
}

// read views a value read by a (buf, limit) -> len host function, retried
// once with a buffer of len bytes.
function read(f: (buf: usize, limit: u32) => u32): Bytes {
  ensureBuf();
  let n = f(buf, bufCap);
  if (n > bufCap) { grow(n); n = f(buf, bufCap); }
  return lenView(n);
}

function readMethod(): Bytes {
  return read((p: usize, n: u32): u32 => host.getMethod(p, n));
}

function readURI(): Bytes {
  return read((p: usize, n: u32): u32 => host.getURI(p, n));
}

// readList's last count (lists and lookups: the i64's high half).
let lastCount: u32 = 0;

function countView(r: u64): Bytes {
  lastCount = <u32>(r >> 32);
  return lenView(<u32>r);
}

function readHeaderValues(name: string): Bytes {
  ensureBuf();
  const nl = encode(name, 0);
  let r = host.getHeaderValues(headerKindRequest, args[0], nl, buf, bufCap);
  if (<u32>r > bufCap) { grow(<u32>r); r = host.getHeaderValues(headerKindRequest, args[0], nl, buf, bufCap); }
  return countView(r);
}

// methodBytes returns the request method (a view).
export function methodBytes(): Bytes { return readMethod(); }

export function method(): string { return readMethod().toString(); }

// uriBytes returns the normalised path and the query as received (a view).
export function uriBytes(): Bytes { return readURI(); }

export function uri(): string { return readURI().toString(); }

// path returns the URI's path, without the query.
export function path(): string {
  const v = readURI();
  let n = v.len;
  for (let i = 0; i < v.len; i++) {
    if (load<u8>(v.ptr + <usize>i) == 0x3f) { n = i; break; }
  }
  return String.UTF8.decodeUnsafe(v.ptr, <usize>n);
}

// headerBytes returns the first value of a request header (a view), or
// null when the request has none.
export function headerBytes(name: string): Bytes | null {
  const v = readHeaderValues(name);
  if (lastCount == 0) return null;
  // One value is the whole list: a request header value never holds a NUL
  // (the server refuses such a request with 400), so only a list of
  // several is cut at its first separator (a 200-byte token scanned byte
  // by byte cost more than the rest of jwtauth-as's call).
  if (lastCount == 1) return v;
  for (let i = 0; i < v.len; i++) {
    if (load<u8>(v.ptr + <usize>i) == 0) { v.len = i; break; }
  }
  return v;
}

export function header(name: string): string | null {
  const v = headerBytes(name);
  return v == null ? null : v.toString();
}

function splitNUL(v: Bytes, count: u32): string[] {
  const out = new Array<string>(0);
  if (count == 0) return out;
  let start = 0;
  for (let i = 0; i <= v.len && <u32>out.length < count; i++) {
    if (i == v.len || load<u8>(v.ptr + <usize>i) == 0) {
      out.push(String.UTF8.decodeUnsafe(v.ptr + <usize>start, <usize>(i - start)));
      start = i + 1;
    }
  }
  return out;
}

// headerValues returns every value of a request header.
export function headerValues(name: string): string[] {
  const v = readHeaderValues(name);
  return splitNUL(v, lastCount);
}

// headerNames returns the request's header names, one per header line.
export function headerNames(): string[] {
  ensureBuf();
  let r = host.getHeaderNames(headerKindRequest, buf, bufCap);
  if (<u32>r > bufCap) { grow(<u32>r); r = host.getHeaderNames(headerKindRequest, buf, bufCap); }
  const v = countView(r);
  return splitNUL(v, lastCount);
}

function isSpace(c: u8): bool {
  return c == 0x20 || (c >= 0x09 && c <= 0x0d);
}

// bearerBytes returns the token of an "Authorization: Bearer" header (a
// view; the scheme matched case-insensitively, white space trimmed), or
// null. Pass it straight to verifyJWTBytes.
export function bearerBytes(): Bytes | null {
  const v = headerBytes("Authorization");
  if (v == null || v.len < 7) return null;
  // "bearer " compared ASCII case-insensitively.
  const p = v.ptr;
  if ((load<u8>(p) | 0x20) != 0x62 || (load<u8>(p, 1) | 0x20) != 0x65 || (load<u8>(p, 2) | 0x20) != 0x61 ||
      (load<u8>(p, 3) | 0x20) != 0x72 || (load<u8>(p, 4) | 0x20) != 0x65 || (load<u8>(p, 5) | 0x20) != 0x72 ||
      load<u8>(p, 6) != 0x20) {
    return null;
  }
  let s = p + 7, e = p + <usize>v.len;
  while (s < e && isSpace(load<u8>(s))) s++;
  while (e > s && isSpace(load<u8>(e - 1))) e--;
  v.ptr = s;
  v.len = <i32>(e - s);
  return v;
}

export function bearer(): string | null {
  const v = bearerBytes();
  return v == null ? null : v.toString();
}

// cookieBytes returns a request cookie's value (a view), or null.
export function cookieBytes(name: string): Bytes | null {
  ensureBuf();
  const nl = encode(name, 0);
  let r = host.getCookie(args[0], nl, buf, bufCap);
  if (<u32>r > bufCap) { grow(<u32>r); r = host.getCookie(args[0], nl, buf, bufCap); }
  const v = countView(r);
  return lastCount == 0 ? null : v;
}

export function cookie(name: string): string | null {
  const v = cookieBytes(name);
  return v == null ? null : v.toString();
}

// sourceAddr returns the client's "ip:port".
export function sourceAddr(): string {
  return read((p: usize, n: u32): u32 => host.getSourceAddr(p, n)).toString();
}

// body returns up to body_limit bytes of the request body (capability body).
export function body(): Uint8Array {
  return read((p: usize, n: u32): u32 => host.getBody(p, n)).copy();
}

// setSubject sets the authenticated user (1..256 bytes, no control bytes
// but tab, no space or tab at either end); false when the host rejects it.
export function setSubject(s: string): bool {
  const n = encode(s, 0);
  return host.setSubject(args[0], n) == StatusOK;
}

// setSubjectBytes is setSubject for a view, such as jwtClaimBytes' result.
export function setSubjectBytes(b: Bytes): bool {
  return host.setSubject(b.ptr, <u32>b.len) == StatusOK;
}

// setClaim adds X-Safeclose-Claim-<name> upstream: name [a-z0-9_-]{1,64},
// value at most 1 KiB, at most 16 claims; false when rejected.
export function setClaim(name: string, value: string): bool {
  const nl = encode(name, 0);
  const vl = encode(value, 1);
  return host.setClaim(args[0], nl, args[1], vl) == StatusOK;
}

// setClaimBytes is setClaim with the value as a view.
export function setClaimBytes(name: string, value: Bytes): bool {
  const nl = encode(name, 0);
  return host.setClaim(args[0], nl, value.ptr, <u32>value.len) == StatusOK;
}

// configBytes returns the plugin config as JSON (capability config); empty
// when none. A view: parse it before the next SDK call.
export function configBytes(): Bytes {
  return read((p: usize, n: u32): u32 => host.getConfig(p, n));
}

// config returns the plugin config as JSON text.
export function config(): string {
  return configBytes().toString();
}

// logEnabled reports whether level is logged (capability log).
export function logEnabled(level: i32): bool {
  return host.logEnabled(level) != 0;
}

// log writes a line to the proxy's log, tagged with tenant and plugin and
// rate-limited by the host (capability log).
export function log(level: i32, msg: string): void {
  if (host.logEnabled(level) != 0) {
    const n = encode(msg, 0);
    host.log(level, args[0], n);
  }
}

// now returns the host's wall clock in Unix nanoseconds (capability clock).
export function now(): i64 {
  return host.now();
}

// verifyJWT checks a compact JWT in the host (capability crypto); it
// returns JWTValid or the reason.
export function verifyJWT(token: string): i32 {
  const n = encode(token, 0);
  return host.jwtVerify(args[0], n);
}

// verifyJWTBytes is verifyJWT for a view, such as bearerBytes' result.
export function verifyJWTBytes(token: Bytes): i32 {
  return host.jwtVerify(token.ptr, <u32>token.len);
}

// jwtClaimBytes returns a claim of the token last verified in this call
// (strings decoded, other values as JSON text) as a view, or null.
export function jwtClaimBytes(name: string): Bytes | null {
  ensureBuf();
  const nl = encode(name, 0);
  let r = host.jwtClaim(args[0], nl, buf, bufCap);
  if (<u32>r > bufCap) { grow(<u32>r); r = host.jwtClaim(args[0], nl, buf, bufCap); }
  const v = countView(r);
  return lastCount == 0 ? null : v;
}

export function jwtClaim(name: string): string | null {
  const v = jwtClaimBytes(name);
  return v == null ? null : v.toString();
}

// hmacSHA256Verify returns 1 if mac is HMAC-SHA256(secret, msg) for the
// named secret, 0 if not, -1 if there is no such secret (capability crypto).
export function hmacSHA256Verify(secret: string, msg: Bytes, mac: Bytes): i32 {
  const n = encode(secret, 0);
  return host.hmacSHA256Verify(args[0], n, msg.ptr, <u32>msg.len, mac.ptr, <u32>mac.len);
}

// sha256Bytes hashes msg in the host and returns the 32-byte digest as a
// view (capability crypto). msg may be a view of the SDK's buffer: the host
// reads it before writing the digest there.
export function sha256Bytes(msg: Bytes): Bytes {
  ensureBuf();
  host.sha256(msg.ptr, <u32>msg.len, buf, bufCap);
  return lenView(32);
}

// kvLookup reads the tenant's key/value store (capability kv) into a view:
// it returns StatusOK (found), StatusNotFound, or StatusUnavailable (the
// store failed; nothing is known), and the value through kvValue().
export function kvLookup(key: string): i32 {
  ensureBuf();
  const kl = encode(key, 0);
  let r = host.kvGet(args[0], kl, buf, bufCap);
  if (<u32>r > bufCap) { grow(<u32>r); r = host.kvGet(args[0], kl, buf, bufCap); }
  const v = countView(r);
  kvLast.ptr = v.ptr;
  kvLast.len = v.len;
  if (lastCount == kvUnavailable) return StatusUnavailable;
  return lastCount == 0 ? StatusNotFound : StatusOK;
}

const kvLast = new Bytes();

// kvValue is the value of the last found kvLookup (a view).
export function kvValue(): Bytes { return kvLast; }

// kvGet fails closed: when the store is unavailable the call traps (an
// auth request gets 503, an event is retried). It returns a copy, or null.
export function kvGet(key: string): Uint8Array | null {
  const s = kvLookup(key);
  if (s == StatusUnavailable) unreachable();
  return s == StatusOK ? kvLast.copy() : null;
}

// kvSet stores value under key for ttlSeconds (0: no expiry); it returns
// StatusOK, StatusInvalid / StatusQuota, or StatusUnavailable.
export function kvSet(key: string, value: Bytes, ttlSeconds: u32): i32 {
  const kl = encode(key, 0);
  return host.kvSet(args[0], kl, value.ptr, <u32>value.len, ttlSeconds);
}

// kvDelete removes a key: StatusOK or StatusUnavailable.
export function kvDelete(key: string): i32 {
  const kl = encode(key, 0);
  return host.kvDelete(args[0], kl);
}

// eventBytes returns the verified Plaid webhook body (event plugins; a view).
export function eventBytes(): Bytes {
  return read((p: usize, n: u32): u32 => host.getEvent(p, n));
}

// itemBytes returns the event's item context as JSON (tenant, user,
// item_id, item_state; never the access token) as a view.
export function itemBytes(): Bytes {
  return read((p: usize, n: u32): u32 => host.getItemContext(p, n));
}

// setPayload replaces the body forwarded to the destinations (at most 256 KiB).
export function setPayload(b: Bytes): bool {
  return host.setPayload(b.ptr, <u32>b.len) == StatusOK;
}

// setPayloadString is setPayload for text.
export function setPayloadString(s: string): bool {
  const n = encode(s, 0);
  return host.setPayload(args[0], n) == StatusOK;
}

// forwardTo names a destination; with Forward only named ones receive it.
export function forwardTo(name: string): bool {
  const n = encode(name, 0);
  return host.addForward(args[0], n) == StatusOK;
}

// bytesOf views a string's UTF-8 bytes in the second argument buffer
// (valid until the next SDK call), to pass text where a Bytes is taken.
export function bytesOf(s: string): Bytes {
  argView.len = encode(s, 1);
  argView.ptr = args[1];
  return argView;
}
