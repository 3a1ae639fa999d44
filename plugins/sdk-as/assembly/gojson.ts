// gojson: JSON read the way Go's encoding/json reads it, so a port decodes
// exactly what its Go example decodes (plugins/examples-as/pathrule and
// webhookfilter import it; json.ts's parseJSON is the SDK's small, lenient
// config reader).
//
//   - the grammar of Go's scanner: strict numbers, the eight escapes, no
//     control bytes in strings, white space " \t\n\r", one value, nesting
//     at most 10000 deep;
//   - strings decoded to UTF-8 bytes as Go's unquote does: an invalid byte
//     becomes U+FFFD, a \u surrogate pair one rune, a lone surrogate U+FFFD;
//   - numbers kept as their text, object members in order with repeats.
// Iterative, not recursive: 10000 levels need no deep call stack.

export const enum Kind { Null, False, True, Number, String, Array, Object }

export class Value {
  kind: Kind = Kind.Null;
  // String: the decoded bytes; Number: its JSON text.
  s: Uint8Array | null = null;
  // Array: its elements; Object: its members' values.
  items: Value[] | null = null;
  // Object: its members' names, in order (repeats kept).
  keys: Uint8Array[] | null = null;
}

const maxDepth = 10000;

// parse reads the n bytes at p; null when Go's json.Unmarshal would report
// a syntax error.
export function parse(p: usize, n: i32): Value | null {
  return new Reader(p, p + <usize>n).read();
}

// A growable byte buffer outside the GC heap.
export class Buf {
  p: usize = 0;
  n: i32 = 0;
  cap: i32 = 0;

  reset(): void { this.n = 0; }

  reserve(k: i32): void {
    if (this.n + k <= this.cap) return;
    let c = max<i32>(this.cap * 2, 256);
    while (c < this.n + k) c *= 2;
    this.p = this.cap == 0 ? heap.alloc(<usize>c) : heap.realloc(this.p, <usize>c);
    this.cap = c;
  }

  byte(c: i32): void {
    this.reserve(1);
    store<u8>(this.p + <usize>this.n, <u8>c);
    this.n++;
  }

  bytes(src: usize, k: i32): void {
    this.reserve(k);
    memory.copy(this.p + <usize>this.n, src, <usize>k);
    this.n += k;
  }

  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
  }

  // rune appends r as UTF-8.
  rune(r: i32): void {
    if (r < 0x80) this.byte(r);
    else if (r < 0x800) { this.byte(0xc0 | r >> 6); this.byte(0x80 | r & 0x3f); }
    else if (r < 0x10000) { this.byte(0xe0 | r >> 12); this.byte(0x80 | r >> 6 & 0x3f); this.byte(0x80 | r & 0x3f); }
    else {
      this.byte(0xf0 | r >> 18); this.byte(0x80 | r >> 12 & 0x3f);
      this.byte(0x80 | r >> 6 & 0x3f); this.byte(0x80 | r & 0x3f);
    }
  }

  copy(): Uint8Array {
    const a = new Uint8Array(this.n);
    memory.copy(a.dataStart, this.p, <usize>this.n);
    return a;
  }
}

const scratch = new Buf();

// runeLen is the length of the valid UTF-8 sequence at p (before end), or 0
// where Go's utf8.DecodeRune reports RuneError of size 1.
export function runeLen(p: usize, end: usize): i32 {
  const c = <i32>load<u8>(p);
  if (c < 0x80) return 1;
  let n = 0, lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) { n = 3; if (c == 0xe0) lo = 0xa0; else if (c == 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; if (c == 0xf0) lo = 0x90; else if (c == 0xf4) hi = 0x8f; }
  else return 0;
  if (end - p < <usize>n) return 0;
  const c1 = <i32>load<u8>(p, 1);
  if (c1 < lo || c1 > hi) return 0;
  for (let i = 2; i < n; i++) {
    const ci = <i32>load<u8>(p + <usize>i);
    if (ci < 0x80 || ci > 0xbf) return 0;
  }
  return n;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// hex4 reads the 4 hex digits at p (before end), or -1.
function hex4(p: usize, end: usize): i32 {
  if (end - p < 4) return -1;
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const d = hexDigit(<i32>load<u8>(p + <usize>i));
    if (d < 0) return -1;
    r = r << 4 | d;
  }
  return r;
}

function isDigit(c: i32): bool { return c >= 0x30 && c <= 0x39; }

class Reader {
  stack: Value[] = [];
  constructor(public pos: usize, public end: usize) {}

  ws(): void {
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  read(): Value | null {
    let v: Value;
    while (true) {
      // A value starts here.
      this.ws();
      if (this.pos >= this.end) return null;
      const c = <i32>load<u8>(this.pos);
      if (c == 0x7b || c == 0x5b) { // { [
        const box = new Value();
        box.kind = c == 0x7b ? Kind.Object : Kind.Array;
        box.items = [];
        if (c == 0x7b) box.keys = [];
        this.pos++;
        if (this.stack.length >= maxDepth) return null;
        this.stack.push(box);
        this.ws();
        if (this.pos < this.end && <i32>load<u8>(this.pos) == c + 2) { // } ]
          this.pos++;
          this.stack.pop();
          v = box;
        } else {
          if (c == 0x7b && !this.key(box)) return null;
          continue;
        }
      } else {
        const s = this.scalar(c);
        if (s == null) return null;
        v = s;
      }
      // v is complete: add it to its container, closing those it ends.
      while (true) {
        if (this.stack.length == 0) {
          this.ws();
          return this.pos == this.end ? v : null;
        }
        const top = unchecked(this.stack[this.stack.length - 1]);
        top.items!.push(v);
        this.ws();
        if (this.pos >= this.end) return null;
        const d = <i32>load<u8>(this.pos++);
        if (d == 0x2c) { // ,
          if (top.kind == Kind.Object && !this.key(top)) return null;
          break;
        }
        if (d != (top.kind == Kind.Object ? 0x7d : 0x5d)) return null;
        this.stack.pop();
        v = top;
      }
    }
  }

  // key reads `"name" :` into box's keys.
  key(box: Value): bool {
    this.ws();
    if (this.pos >= this.end || load<u8>(this.pos) != 0x22) return false;
    const k = this.str();
    if (k == null) return false;
    this.ws();
    if (this.pos >= this.end || load<u8>(this.pos) != 0x3a) return false;
    this.pos++;
    box.keys!.push(k);
    return true;
  }

  scalar(c: i32): Value | null {
    const v = new Value();
    if (c == 0x22) {
      const s = this.str();
      if (s == null) return null;
      v.kind = Kind.String;
      v.s = s;
      return v;
    }
    if (c == 0x74) { v.kind = Kind.True; return this.lit("true") ? v : null; }
    if (c == 0x66) { v.kind = Kind.False; return this.lit("false") ? v : null; }
    if (c == 0x6e) { v.kind = Kind.Null; return this.lit("null") ? v : null; }
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    const start = this.pos;
    let p = this.pos;
    const e = this.end;
    if (p < e && load<u8>(p) == 0x2d) p++;
    if (p >= e || !isDigit(load<u8>(p))) return null;
    if (load<u8>(p) == 0x30) p++;
    else while (p < e && isDigit(load<u8>(p))) p++;
    if (p < e && load<u8>(p) == 0x2e) {
      p++;
      if (p >= e || !isDigit(load<u8>(p))) return null;
      while (p < e && isDigit(load<u8>(p))) p++;
    }
    if (p < e && (load<u8>(p) | 0x20) == 0x65) {
      p++;
      if (p < e && (load<u8>(p) == 0x2b || load<u8>(p) == 0x2d)) p++;
      if (p >= e || !isDigit(load<u8>(p))) return null;
      while (p < e && isDigit(load<u8>(p))) p++;
    }
    this.pos = p;
    v.kind = Kind.Number;
    const t = new Uint8Array(<i32>(p - start));
    memory.copy(t.dataStart, start, p - start);
    v.s = t;
    return v;
  }

  lit(s: string): bool {
    const n = <usize>s.length;
    if (this.end - this.pos < n) return false;
    for (let i: usize = 0; i < n; i++) {
      if (<i32>load<u8>(this.pos + i) != s.charCodeAt(<i32>i)) return false;
    }
    this.pos += n;
    return true;
  }

  // str reads the string at pos (its opening quote) and decodes it as Go's
  // unquote does; null when it is not a valid JSON string.
  str(): Uint8Array | null {
    const e = this.end;
    let p = this.pos + 1;
    const out = scratch;
    out.reset();
    while (true) {
      if (p >= e) return null;
      const c = <i32>load<u8>(p);
      if (c == 0x22) break;
      if (c < 0x20) return null;
      if (c == 0x5c) {
        if (p + 1 >= e) return null;
        const x = <i32>load<u8>(p + 1);
        p += 2;
        if (x == 0x22 || x == 0x5c || x == 0x2f) out.byte(x);
        else if (x == 0x62) out.byte(0x08);
        else if (x == 0x66) out.byte(0x0c);
        else if (x == 0x6e) out.byte(0x0a);
        else if (x == 0x72) out.byte(0x0d);
        else if (x == 0x74) out.byte(0x09);
        else if (x == 0x75) {
          let r = hex4(p, e);
          if (r < 0) return null;
          p += 4;
          if (r >= 0xd800 && r < 0xe000) {
            // A pair only if a high surrogate is followed by \u and a low one.
            let r2 = -1;
            if (e - p >= 6 && load<u8>(p) == 0x5c && load<u8>(p, 1) == 0x75) r2 = hex4(p + 2, e);
            if (r < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000) {
              r = 0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00);
              p += 6;
            } else {
              r = 0xfffd;
            }
          }
          out.rune(r);
        } else return null;
        continue;
      }
      if (c < 0x80) { out.byte(c); p++; continue; }
      const n = runeLen(p, e);
      if (n == 0) { out.rune(0xfffd); p++; continue; }
      out.bytes(p, n);
      p += n;
    }
    this.pos = p + 1;
    return out.copy();
  }
}

// equal reports whether a holds exactly the bytes of b.
export function equal(a: Uint8Array, b: Uint8Array): bool {
  return a.length == b.length && memory.compare(a.dataStart, b.dataStart, <usize>a.length) == 0;
}

// isField reports whether an object member's name selects a Go struct
// field whose JSON name is upper (given in upper case, ASCII): Go matches
// names exactly or else case-insensitively (encoding/json's foldName: each
// rune to the smallest of its simple fold set), so "ſ" (U+017F) counts as
// S and the Kelvin sign (U+212A) as K; no other non-ASCII rune folds to
// ASCII.
export function isField(name: Uint8Array, upper: string): bool {
  let j = 0;
  const n = name.length;
  for (let i = 0; i < n; j++) {
    if (j >= upper.length) return false;
    let c = <i32>unchecked(name[i]);
    if (c < 0x80) {
      if (c >= 0x61 && c <= 0x7a) c -= 0x20;
      i++;
    } else if (i + 1 < n && c == 0xc5 && unchecked(name[i + 1]) == 0xbf) {
      c = 0x53; i += 2;
    } else if (i + 2 < n && c == 0xe2 && unchecked(name[i + 1]) == 0x84 && unchecked(name[i + 2]) == 0xaa) {
      c = 0x4b; i += 3;
    } else return false;
    if (c != upper.charCodeAt(j)) return false;
  }
  return j == upper.length;
}

// StringSlice is a Go []string being decoded into: a repeated member
// decodes over the elements of the earlier one (a null element keeps what
// is there), as Go's decoder reuses a slice's backing array.
export class StringSlice {
  back: Uint8Array[] = [];
  len: i32 = 0;

  at(i: i32): Uint8Array { return unchecked(this.back[i]); }

  // decode stores v as Go decodes it into a []string; false on a type error.
  decode(v: Value): bool {
    if (v.kind == Kind.Null) { this.back = []; this.len = 0; return true; }
    if (v.kind != Kind.Array) return false;
    const items = v.items!;
    if (items.length == 0) { this.back = []; this.len = 0; return true; }
    let ok = true;
    for (let i = 0; i < items.length; i++) {
      if (i >= this.back.length) this.back.push(new Uint8Array(0));
      const it = unchecked(items[i]);
      if (it.kind == Kind.String) unchecked((this.back[i] = it.s!));
      else if (it.kind != Kind.Null) ok = false;
    }
    this.len = items.length;
    return ok;
  }
}

// decodeString is Go decoding v into a string field: a string replaces
// cur, null keeps it; anything else is a type error (null returned).
export function decodeString(v: Value, cur: Uint8Array): Uint8Array | null {
  if (v.kind == Kind.String) return v.s!;
  if (v.kind == Kind.Null) return cur;
  return null;
}
