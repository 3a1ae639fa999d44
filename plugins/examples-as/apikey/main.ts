// apikey (AssemblyScript): the Go example plugins/examples/apikey, ported
// with the same config and answers. Static API keys, stored in the plugin
// config only as SHA-256 digests (lower-case hex), mapped to users.
//
//	config:
//	  header: X-API-Key      # default: Authorization: Bearer <key>
//	  keys:                  # sha256(key) in hex → user
//	    9f86d0…: alice
//	capabilities: [config, crypto]
import * as sdk from "../../sdk-as/assembly";

let loaded = false;
let headerName = "";
// The keys' digests, 32 bytes each, sorted, and their users: a request
// hashes its key in the host and binary-searches, allocating nothing.
let digests: usize = 0;
let users = new Array<string>(0);

function hexVal(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1; // upper case never matches, as Go's hex.Encode writes lower case
}

// loadConfig returns false when the config does not decode; the call then
// fails with 503 and the next call tries again (as the Go plugin does).
function loadConfig(): bool {
  const c = sdk.configBytes();
  let header = "";
  const keys = new Map<string, string>();
  if (c.len > 0) {
    const v = sdk.parseJSON(c.ptr, c.len);
    if (v == null) return false;
    if (v.kind == sdk.JSONKind.Null) { /* no config */ } else if (!v.isObject()) return false;
    else {
      const h = v.get("header");
      if (h != null && h.kind != sdk.JSONKind.Null) {
        if (!h.isString()) return false;
        header = h.text;
      }
      const k = v.get("keys");
      if (k != null && k.kind != sdk.JSONKind.Null) {
        if (!k.isObject()) return false;
        for (let i = 0; i < k.keys.length; i++) {
          const u = k.items[i];
          if (u.kind == sdk.JSONKind.Null) continue;
          if (!u.isString()) return false;
          keys.set(k.keys[i], u.text); // a repeated key: the last wins
        }
      }
    }
  }
  // Only 64 lower-case hex digits can equal a digest's hex; others are kept
  // out (they never match).
  const names = keys.keys();
  const entries = new Array<i32>(0);
  const raw = new Uint8Array(names.length * 32);
  const rawUsers = new Array<string>(0);
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (name.length != 64) continue;
    let ok = true;
    const at = rawUsers.length * 32;
    for (let j = 0; j < 32 && ok; j++) {
      const hi = hexVal(name.charCodeAt(2 * j)), lo = hexVal(name.charCodeAt(2 * j + 1));
      if (hi < 0 || lo < 0) ok = false;
      else raw[at + j] = <u8>(hi << 4 | lo);
    }
    if (!ok) continue;
    entries.push(rawUsers.length);
    rawUsers.push(keys.get(name));
  }
  const base = raw.dataStart;
  sortBase = base; // AssemblyScript has no closures: the comparator reads a global
  entries.sort(byDigest);
  digests = heap.alloc(<usize>max(entries.length, 1) * 32);
  users = new Array<string>(entries.length);
  for (let i = 0; i < entries.length; i++) {
    memory.copy(digests + <usize>i * 32, base + <usize>entries[i] * 32, 32);
    users[i] = rawUsers[entries[i]];
  }
  headerName = header;
  return true;
}

let sortBase: usize = 0;

function byDigest(a: i32, b: i32): i32 {
  return memory.compare(sortBase + <usize>a * 32, sortBase + <usize>b * 32, 32);
}

function find(sum: usize): i32 {
  let lo = 0, hi = users.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = memory.compare(digests + <usize>mid * 32, sum, 32);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

export function auth_handle(): i64 {
  if (!loaded) {
    if (!loadConfig()) return sdk.deny(503);
    loaded = true;
  }
  const key = headerName != "" ? sdk.headerBytes(headerName) : sdk.bearerBytes();
  if (key == null || key.len == 0) return sdk.deny(401);
  const sum = sdk.sha256Bytes(key);
  const i = find(sum.ptr);
  if (i < 0 || !sdk.setSubject(unchecked(users[i]))) return sdk.deny(401);
  return sdk.Allow;
}
