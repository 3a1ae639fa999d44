// webhookfilter (AssemblyScript): the Go example plugins/examples/webhookfilter,
// ported with the same config and answers. It drops the event codes a tenant
// does not care about, adds the item's context (tenant, user, state; never
// the access token) under "safeclose", and forwards the result to one
// configured destination.
//
//	config:
//	  drop_codes: [SYNC_UPDATES_AVAILABLE]
//	  forward_to: app          # a destination name from the tenant's forward list
//	capabilities: [config]
//
// The payload is byte for byte what the Go plugin writes: the event decoded
// as encoding/json decodes it into a map[string]any and encoded again (keys
// sorted, repeated keys: the last wins; numbers as float64; <, > and &
// escaped). gojson.ts reads JSON as Go does; number.ts writes the numbers.
import * as sdk from "../../sdk-as/assembly";
import { Buf, Kind, StringSlice, Value, decodeString, equal, isField, parse, runeLen } from "../../sdk-as/assembly/gojson";
import { format, rangeError, toFloat } from "./number";

// Not a valid event_handle result: the host retries, then dead-letters
// (what the Go plugin returns when something fails).
const failed: i32 = -1;

const empty = new Uint8Array(0);
let dropCodes = new StringSlice();
let forwardTo = empty;

// loadConfig decodes the config as sdk.DecodeConfig does into the Go
// plugin's struct (the Go plugin does it on every call too).
function loadConfig(): bool {
  dropCodes = new StringSlice();
  forwardTo = empty;
  const c = sdk.configBytes();
  if (c.len == 0) return true;
  const v = parse(c.ptr, c.len);
  if (v == null) return false;
  if (v.kind == Kind.Null) return true;
  if (v.kind != Kind.Object) return false;
  const keys = v.keys!, items = v.items!;
  let ok = true;
  for (let i = 0; i < keys.length; i++) {
    const k = unchecked(keys[i]), m = unchecked(items[i]);
    if (isField(k, "DROP_CODES")) {
      if (!dropCodes.decode(m)) ok = false;
    } else if (isField(k, "FORWARD_TO")) {
      const s = decodeString(m, forwardTo);
      if (s == null) ok = false;
      else forwardTo = s;
    }
  }
  return ok;
}

function ascii(s: string): Uint8Array {
  const a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = <u8>s.charCodeAt(i);
  return a;
}

// numbers turns every number's text into the one Go writes for its
// float64; false when one is out of float64's range (Go's Unmarshal fails).
function numbers(root: Value): bool {
  const work: Value[] = [root];
  while (work.length > 0) {
    const v = work.pop();
    if (v.kind == Kind.Number) {
      const t = v.s!;
      // Up to 15 digits, no fraction or exponent: Go writes the same text.
      let plain = t.length <= 16;
      let digits = 0;
      for (let i = 0; i < t.length && plain; i++) {
        const c = t[i];
        if (c >= 0x30 && c <= 0x39) digits++;
        else if (c != 0x2d) plain = false;
      }
      if (plain && digits <= 15) continue;
      const f = toFloat(t);
      if (rangeError) return false;
      v.s = ascii(format(f));
    } else if (v.kind == Kind.Array || v.kind == Kind.Object) {
      const items = v.items!;
      for (let i = 0; i < items.length; i++) work.push(unchecked(items[i]));
    }
  }
  return true;
}

// A string member.
function str(s: Uint8Array): Value {
  const v = new Value();
  v.kind = Kind.String;
  v.s = s;
  return v;
}

export function event_handle(): i32 {
  if (!loadConfig()) return failed;
  const b = sdk.eventBytes();
  const ev = parse(b.ptr, b.len);
  if (ev == null || (ev.kind != Kind.Null && ev.kind != Kind.Object) || !numbers(ev)) return failed;
  // code, _ := ev["webhook_code"].(string)
  let code = empty;
  if (ev.kind == Kind.Object) {
    const keys = ev.keys!;
    const name = ascii("webhook_code");
    for (let i = keys.length - 1; i >= 0; i--) {
      if (equal(unchecked(keys[i]), name)) {
        const m = unchecked(ev.items![i]);
        if (m.kind == Kind.String) code = m.s!;
        break;
      }
    }
  }
  for (let i = 0; i < dropCodes.len; i++) {
    if (equal(dropCodes.at(i), code)) return sdk.Drop;
  }
  // sdk.Item(): the host's item context into the Go SDK's struct.
  const ib = sdk.itemBytes();
  const item = parse(ib.ptr, ib.len);
  if (item == null || (item.kind != Kind.Null && item.kind != Kind.Object)) return failed;
  let tenant = empty, user = empty, itemID = empty, state = empty;
  if (item.kind == Kind.Object) {
    const keys = item.keys!, items = item.items!;
    for (let i = 0; i < keys.length; i++) {
      const k = unchecked(keys[i]), m = unchecked(items[i]);
      let s: Uint8Array | null = empty;
      if (isField(k, "TENANT")) { s = decodeString(m, tenant); if (s != null) tenant = s; }
      else if (isField(k, "USER")) { s = decodeString(m, user); if (s != null) user = s; }
      else if (isField(k, "ITEM_ID")) { s = decodeString(m, itemID); if (s != null) itemID = s; }
      else if (isField(k, "ITEM_STATE")) { s = decodeString(m, state); if (s != null) state = s; }
      if (s == null) return failed;
    }
  }
  // The Go plugin assigns into the map Unmarshal left nil for a "null"
  // event, and panics: trap as well.
  if (ev.kind == Kind.Null) unreachable();
  const sc = new Value();
  sc.kind = Kind.Object;
  sc.keys = [ascii("tenant"), ascii("user"), ascii("item_state")];
  sc.items = [str(tenant), str(user), str(state)];
  ev.keys!.push(ascii("safeclose")); // the last of repeated keys wins
  ev.items!.push(sc);
  payload.reset();
  marshal(ev, payload);
  if (!sdk.setPayload(new sdk.Bytes(payload.p, payload.n))) return failed;
  if (forwardTo.length == 0) return sdk.Keep;
  if (!sdk.forwardTo(String.UTF8.decodeUnsafe(forwardTo.dataStart, <usize>forwardTo.length))) return failed;
  return sdk.Forward;
}

const payload = new Buf();

// An object or array being written: its members in output order.
class Frame {
  constructor(public v: Value, public order: i32[] | null, public i: i32 = 0) {}
}

let sortKeys: Uint8Array[] = [];

function compareBytes(a: Uint8Array, b: Uint8Array): i32 {
  const n = min(a.length, b.length);
  const c = memory.compare(a.dataStart, b.dataStart, <usize>n);
  if (c != 0) return c;
  return a.length - b.length;
}

// byKey orders member indexes by name, then the later first.
function byKey(a: i32, b: i32): i32 {
  const c = compareBytes(unchecked(sortKeys[a]), unchecked(sortKeys[b]));
  return c != 0 ? c : b - a;
}

// members lists an object's members as Go's map holds and writes them:
// one per name (the last), sorted by name's bytes.
function members(v: Value): i32[] {
  const keys = v.keys!;
  const idx = new Array<i32>(keys.length);
  for (let i = 0; i < keys.length; i++) unchecked((idx[i] = i));
  sortKeys = keys; // AssemblyScript has no closures: the comparator reads a global
  idx.sort(byKey);
  const out = new Array<i32>(0);
  for (let i = 0; i < idx.length; i++) {
    const k = unchecked(idx[i]);
    if (out.length == 0 || !equal(unchecked(keys[out[out.length - 1]]), unchecked(keys[k]))) out.push(k);
  }
  return out;
}

const hex = "0123456789abcdef";

// quote writes s as encoding/json does (HTML escaping on).
function quote(s: Uint8Array, out: Buf): void {
  out.byte(0x22);
  const p = s.dataStart, n = s.length;
  let start = 0, i = 0;
  while (i < n) {
    const c = <i32>load<u8>(p + <usize>i);
    if (c < 0x80) {
      if (c >= 0x20 && c != 0x22 && c != 0x5c && c != 0x3c && c != 0x3e && c != 0x26) { i++; continue; }
      out.bytes(p + <usize>start, i - start);
      if (c == 0x22 || c == 0x5c) { out.byte(0x5c); out.byte(c); }
      else if (c == 0x08) out.ascii("\\b");
      else if (c == 0x0c) out.ascii("\\f");
      else if (c == 0x0a) out.ascii("\\n");
      else if (c == 0x0d) out.ascii("\\r");
      else if (c == 0x09) out.ascii("\\t");
      else { out.ascii("\\u00"); out.byte(hex.charCodeAt(c >> 4)); out.byte(hex.charCodeAt(c & 15)); }
      i++;
      start = i;
      continue;
    }
    const size = runeLen(p + <usize>i, p + <usize>n);
    if (size == 0) {
      out.bytes(p + <usize>start, i - start);
      out.ascii("\\ufffd");
      i++;
      start = i;
      continue;
    }
    // U+2028 and U+2029 are escaped.
    if (size == 3 && c == 0xe2 && load<u8>(p + <usize>i, 1) == 0x80 && (load<u8>(p + <usize>i, 2) & 0xfe) == 0xa8) {
      out.bytes(p + <usize>start, i - start);
      out.ascii("\\u202");
      out.byte(hex.charCodeAt(load<u8>(p + <usize>i, 2) & 15));
      i += 3;
      start = i;
      continue;
    }
    i += size;
  }
  out.bytes(p + <usize>start, n - start);
  out.byte(0x22);
}

// marshal writes v as json.Marshal writes the map[string]any, without
// recursion (the event may nest 10000 deep).
function marshal(root: Value, out: Buf): void {
  const stack = new Array<Frame>(0);
  let v = root;
  while (true) {
    const k = v.kind;
    if (k == Kind.Null) out.ascii("null");
    else if (k == Kind.True) out.ascii("true");
    else if (k == Kind.False) out.ascii("false");
    else if (k == Kind.Number) { const t = v.s!; out.bytes(t.dataStart, t.length); }
    else if (k == Kind.String) quote(v.s!, out);
    else if (k == Kind.Array) {
      if (v.items!.length == 0) out.ascii("[]");
      else { out.byte(0x5b); stack.push(new Frame(v, null)); }
    } else {
      const order = members(v);
      if (order.length == 0) out.ascii("{}");
      else { out.byte(0x7b); stack.push(new Frame(v, order)); }
    }
    // The next value to write, closing the containers that are done.
    let next: Value | null = null;
    while (stack.length > 0) {
      const f = unchecked(stack[stack.length - 1]);
      const order = f.order;
      const n = order != null ? order.length : f.v.items!.length;
      if (f.i < n) {
        if (f.i > 0) out.byte(0x2c);
        if (order != null) {
          const m = unchecked(order[f.i]);
          quote(unchecked(f.v.keys![m]), out);
          out.byte(0x3a);
          next = unchecked(f.v.items![m]);
        } else {
          next = unchecked(f.v.items![f.i]);
        }
        f.i++;
        break;
      }
      out.byte(order != null ? 0x7d : 0x5d);
      stack.pop();
    }
    if (next == null) return;
    v = next;
  }
}
