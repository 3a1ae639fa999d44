// pathrule (AssemblyScript): the Go example plugins/examples/pathrule,
// ported with the same config and answers. A tenant rule: an internal tool
// that only some networks may reach, and only on some paths. A request
// from an allowed source range to an allowed path prefix is let through as
// the user "net:<ip>"; anything else is denied with 403. The prefix check
// is sound because the host hands the plugin the normalised path the
// upstream also gets (no "..", "//" or encoded dots; hostabi/ABI.md §4.1).
//
//	config:
//	  allow_cidrs: [10.0.0.0/8, 127.0.0.0/8]
//	  allow_paths: [/internal/, /health]
//	capabilities: [config]
//
// Addresses and prefixes are read as Go's net/netip reads them (the same
// forms accepted and refused), the config as encoding/json decodes it
// (gojson.ts); the source address and the path are read as bytes.
import * as sdk from "../../sdk-as/assembly";
import { getSourceAddr } from "../../sdk-as/assembly/imports";
import { Kind, StringSlice, isField, parse } from "../../sdk-as/assembly/gojson";

// Addr is a netip.Addr: 128 bits (an IPv4 address in its last 32), its
// family, and whether it has an IPv6 zone.
class Addr {
  v4: bool = false;
  hi: u64 = 0;
  lo: u64 = 0;
  zone: bool = false;
}

// Prefix is a netip.Prefix.
class Prefix {
  constructor(public ip: Addr, public bits: i32) {}
}

let loaded = false;
let prefixes = new Array<Prefix>(0);
let paths = new Array<Uint8Array>(0);

function at(p: usize, i: i32): i32 { return <i32>load<u8>(p + <usize>i); }

// lastIndex is the index of the last byte c among the n at p, or -1.
function lastIndex(p: usize, n: i32, c: i32): i32 {
  for (let i = n - 1; i >= 0; i--) {
    if (at(p, i) == c) return i;
  }
  return -1;
}

function isDigit(c: i32): bool { return c >= 0x30 && c <= 0x39; }

// ipv4 is netip's parseIPv4Fields over [p, p+n): the address, or -1.
function ipv4(p: usize, n: i32): i64 {
  let val = 0, pos = 0, digLen = 0;
  let out: u32 = 0;
  for (let i = 0; i < n; i++) {
    const c = at(p, i);
    if (isDigit(c)) {
      if (digLen == 1 && val == 0) return -1; // leading zero
      val = val * 10 + c - 0x30;
      digLen++;
      if (val > 255) return -1;
    } else if (c == 0x2e) {
      if (i == 0 || i == n - 1 || at(p, i - 1) == 0x2e) return -1;
      if (pos == 3) return -1;
      out = out << 8 | <u32>val;
      pos++;
      val = 0;
      digLen = 0;
    } else return -1;
  }
  if (pos < 3) return -1;
  return <i64>(out << 8 | <u32>val);
}

const ip6 = new StaticArray<u8>(16);

// ipv6 is netip's parseIPv6 over [p, p+n) into a.
function ipv6(p: usize, n: i32, a: Addr): bool {
  let sn = n;
  let zone = false;
  for (let i = 0; i < n; i++) {
    if (at(p, i) == 0x25) { // %
      if (i == n - 1) return false; // an empty zone
      sn = i;
      zone = true;
      break;
    }
  }
  for (let j = 0; j < 16; j++) unchecked((ip6[j] = 0));
  let s = p, e = p + <usize>sn;
  let ellipsis = -1;
  if (e - s >= 2 && load<u8>(s) == 0x3a && load<u8>(s, 1) == 0x3a) {
    ellipsis = 0;
    s += 2;
    if (s == e) { a.v4 = false; a.hi = 0; a.lo = 0; a.zone = zone; return true; }
  }
  let i = 0;
  while (i < 16) {
    let off = 0;
    let acc: u32 = 0;
    for (; s + <usize>off < e; off++) {
      const c = at(s, off);
      if (isDigit(c)) acc = (acc << 4) + <u32>(c - 0x30);
      else if (c >= 0x61 && c <= 0x66) acc = (acc << 4) + <u32>(c - 0x61 + 10);
      else if (c >= 0x41 && c <= 0x46) acc = (acc << 4) + <u32>(c - 0x41 + 10);
      else break;
      if (off > 3) return false;
      if (acc > 0xffff) return false;
    }
    if (off == 0) return false;
    if (s + <usize>off < e && at(s, off) == 0x2e) { // a trailing IPv4
      if (ellipsis < 0 && i != 12) return false;
      if (i + 4 > 16) return false;
      const v = ipv4(s, <i32>(e - s));
      if (v < 0) return false;
      unchecked((ip6[i] = <u8>(v >> 24)));
      unchecked((ip6[i + 1] = <u8>(v >> 16)));
      unchecked((ip6[i + 2] = <u8>(v >> 8)));
      unchecked((ip6[i + 3] = <u8>v));
      s = e;
      i += 4;
      break;
    }
    unchecked((ip6[i] = <u8>(acc >> 8)));
    unchecked((ip6[i + 1] = <u8>acc));
    i += 2;
    s += <usize>off;
    if (s == e) break;
    if (load<u8>(s) != 0x3a) return false;
    if (e - s == 1) return false;
    s++;
    if (load<u8>(s) == 0x3a) {
      if (ellipsis >= 0) return false;
      ellipsis = i;
      s++;
      if (s == e) break;
    }
  }
  if (s != e) return false;
  if (i < 16) {
    if (ellipsis < 0) return false;
    const k = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) unchecked((ip6[j + k] = ip6[j]));
    for (let j = ellipsis; j < ellipsis + k; j++) unchecked((ip6[j] = 0));
  } else if (ellipsis >= 0) return false;
  let hi: u64 = 0, lo: u64 = 0;
  for (let j = 0; j < 8; j++) hi = hi << 8 | <u64>unchecked(ip6[j]);
  for (let j = 8; j < 16; j++) lo = lo << 8 | <u64>unchecked(ip6[j]);
  a.v4 = false; a.hi = hi; a.lo = lo; a.zone = zone;
  return true;
}

// parseAddr is netip.ParseAddr over [p, p+n).
function parseAddr(p: usize, n: i32): Addr | null {
  for (let i = 0; i < n; i++) {
    const c = at(p, i);
    if (c == 0x2e) {
      const v = ipv4(p, n);
      if (v < 0) return null;
      const a = new Addr();
      a.v4 = true;
      a.lo = 0xffff00000000 | <u64>v;
      return a;
    }
    if (c == 0x3a) {
      const a = new Addr();
      return ipv6(p, n, a) ? a : null;
    }
    if (c == 0x25) return null;
  }
  return null;
}

// parsePrefix is netip.ParsePrefix.
function parsePrefix(s: Uint8Array): Prefix | null {
  const p = s.dataStart, n = s.length;
  const slash = lastIndex(p, n, 0x2f);
  if (slash < 0) return null;
  const ip = parseAddr(p, slash);
  if (ip == null || ip.zone) return null;
  const bp = p + <usize>(slash + 1), bn = n - slash - 1;
  // Digits only, no sign, no leading zero (but "0").
  if (bn == 0 || (bn > 1 && !(at(bp, 0) >= 0x31 && at(bp, 0) <= 0x39))) return null;
  let bits = 0;
  for (let i = 0; i < bn; i++) {
    const c = at(bp, i);
    if (!isDigit(c)) return null;
    if (bits <= 128) bits = bits * 10 + c - 0x30;
  }
  if (bits > (ip.v4 ? 32 : 128)) return null;
  return new Prefix(ip, bits);
}

// parseAddrPort is netip.ParseAddrPort's address (the port checked).
function parseAddrPort(s: Uint8Array): Addr | null {
  const p = s.dataStart, n = s.length;
  const colon = lastIndex(p, n, 0x3a);
  if (colon < 0) return null;
  let ipP = p, ipN = colon;
  const portP = p + <usize>(colon + 1), portN = n - colon - 1;
  if (ipN == 0 || portN == 0) return null;
  let v6 = false;
  if (at(ipP, 0) == 0x5b) { // [
    if (ipN < 2 || at(ipP, ipN - 1) != 0x5d) return null;
    ipP++;
    ipN -= 2;
    v6 = true;
  }
  // strconv.ParseUint(port, 10, 16)
  let port = 0;
  for (let i = 0; i < portN; i++) {
    const c = at(portP, i);
    if (!isDigit(c)) return null;
    port = port * 10 + c - 0x30;
    if (port > 0xffff) return null;
  }
  const a = parseAddr(ipP, ipN);
  if (a == null || a.v4 == v6) return null;
  return a;
}

// contains is netip.Prefix.Contains.
function contains(pf: Prefix, ip: Addr): bool {
  if (ip.zone || pf.ip.v4 != ip.v4) return false;
  const b = pf.bits;
  if (ip.v4) {
    if (b == 0) return true;
    return (((ip.lo ^ pf.ip.lo) & 0xffffffff) >> <u64>(32 - b)) == 0;
  }
  const xh = ip.hi ^ pf.ip.hi, xl = ip.lo ^ pf.ip.lo;
  if (b <= 64) return b == 0 || (xh >> <u64>(64 - b)) == 0;
  return xh == 0 && (xl >> <u64>(128 - b)) == 0;
}

const hex = "0123456789abcdef";

function hex16(v: u32): string {
  let s = "";
  let started = false;
  for (let sh = 12; sh >= 0; sh -= 4) {
    const d = (v >> <u32>sh) & 15;
    if (d != 0 || started || sh == 0) { s += hex.charAt(<i32>d); started = true; }
  }
  return s;
}

// addrString is netip.Addr.String for an address without a zone.
function addrString(a: Addr): string {
  if (a.v4) {
    const v = <u32>a.lo;
    return (v >> 24).toString() + "." + ((v >> 16) & 255).toString() + "." +
      ((v >> 8) & 255).toString() + "." + (v & 255).toString();
  }
  const g = new StaticArray<u32>(8);
  for (let i = 0; i < 4; i++) {
    g[i] = <u32>(a.hi >> <u64>(48 - 16 * i)) & 0xffff;
    g[i + 4] = <u32>(a.lo >> <u64>(48 - 16 * i)) & 0xffff;
  }
  // The first longest run of two or more zero groups becomes "::".
  let zs = -1, ze = -1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && g[j] == 0) j++;
    if (j - i >= 2 && j - i > ze - zs) { zs = i; ze = j; }
  }
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (i == zs) {
      s += "::";
      i = ze;
      if (i >= 8) break;
    } else if (i > 0) s += ":";
    s += hex16(g[i]);
  }
  return s;
}

// loadConfig decodes the config as sdk.DecodeConfig does into the Go
// plugin's struct and parses the prefixes; false sends 503 (and the next
// call tries again, as the Go plugin does).
function loadConfig(): bool {
  const cidrs = new StringSlice(), allow = new StringSlice();
  const c = sdk.configBytes();
  if (c.len > 0) {
    const v = parse(c.ptr, c.len);
    if (v == null) return false;
    if (v.kind != Kind.Null) {
      if (v.kind != Kind.Object) return false;
      const keys = v.keys!, items = v.items!;
      let ok = true;
      for (let i = 0; i < keys.length; i++) {
        const k = unchecked(keys[i]);
        if (isField(k, "ALLOW_CIDRS")) { if (!cidrs.decode(unchecked(items[i]))) ok = false; }
        else if (isField(k, "ALLOW_PATHS")) { if (!allow.decode(unchecked(items[i]))) ok = false; }
      }
      if (!ok) return false;
    }
  }
  const ps = new Array<Prefix>(0);
  for (let i = 0; i < cidrs.len; i++) {
    const pf = parsePrefix(cidrs.at(i));
    if (pf == null) return false;
    ps.push(pf);
  }
  prefixes = ps;
  paths = new Array<Uint8Array>(0);
  for (let i = 0; i < allow.len; i++) paths.push(allow.at(i));
  return true;
}

// sourceAddr returns the client's "ip:port" as the host's bytes (the Go
// plugin reads bytes; sdk.sourceAddr decodes UTF-8, which would drop or
// replace an invalid byte).
function sourceAddr(): Uint8Array {
  let b = new Uint8Array(64);
  let n = getSourceAddr(b.dataStart, <u32>b.length);
  if (n > <u32>b.length) {
    b = new Uint8Array(<i32>n);
    n = getSourceAddr(b.dataStart, <u32>b.length);
    if (n > <u32>b.length) unreachable(); // the ABI is broken: fail closed
  }
  return b.slice(0, <i32>n);
}

export function auth_handle(): i64 {
  if (!loaded) {
    if (!loadConfig()) return sdk.deny(503);
    loaded = true;
  }
  const ip = parseAddrPort(sourceAddr());
  if (ip == null) return sdk.deny(403);
  // Unmap: an IPv4-mapped IPv6 address is its IPv4 address (zone dropped).
  if (!ip.v4 && ip.hi == 0 && (ip.lo >> 32) == 0xffff) { ip.v4 = true; ip.zone = false; }
  let inRange = false;
  for (let i = 0; i < prefixes.length; i++) {
    if (contains(unchecked(prefixes[i]), ip)) { inRange = true; break; }
  }
  if (!inRange) return sdk.deny(403);
  // The path: the URI up to its query, compared as bytes.
  const u = sdk.uriBytes();
  let n = u.len;
  for (let i = 0; i < u.len; i++) {
    if (load<u8>(u.ptr + <usize>i) == 0x3f) { n = i; break; }
  }
  for (let i = 0; i < paths.length; i++) {
    const pre = unchecked(paths[i]);
    if (pre.length <= n && memory.compare(u.ptr, pre.dataStart, <usize>pre.length) == 0) {
      if (!sdk.setSubject("net:" + addrString(ip))) return sdk.deny(403);
      return sdk.Allow;
    }
  }
  return sdk.deny(403);
}
