// A small JSON reader for plugin configs (get_config's JSON): objects,
// arrays, strings (all escapes), numbers kept as text, true/false/null.
// Parse a config once (in _initialize or on the first call) and keep the
// values you need; parsing allocates.

export const enum JSONKind { Null, Bool, Number, String, Array, Object }

export class JSONValue {
  kind: JSONKind = JSONKind.Null;
  // String: the decoded text; Number: its JSON text; Bool: "true"/"false".
  text: string = "";
  items: JSONValue[] = [];
  keys: string[] = [];

  // get returns an object member, or null (also when this is no object).
  get(key: string): JSONValue | null {
    if (this.kind != JSONKind.Object) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) { // the last duplicate wins
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  isString(): bool { return this.kind == JSONKind.String; }
  isArray(): bool { return this.kind == JSONKind.Array; }
  isObject(): bool { return this.kind == JSONKind.Object; }

  // str returns an object member that is a string, or def.
  str(key: string, def: string): string {
    const v = this.get(key);
    return v != null && v.kind == JSONKind.String ? v.text : def;
  }

  // strings returns an object member that is an array of strings (other
  // items skipped); empty when absent.
  strings(key: string): string[] {
    const out = new Array<string>(0);
    const v = this.get(key);
    if (v == null || v.kind != JSONKind.Array) return out;
    for (let i = 0; i < v.items.length; i++) {
      if (v.items[i].kind == JSONKind.String) out.push(v.items[i].text);
    }
    return out;
  }
}

class Parser {
  pos: usize;
  constructor(public p: usize, public end: usize) { this.pos = p; }

  fail(): JSONValue | null { this.pos = this.end + 1; return null; }

  ws(): void {
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  lit(s: string, kind: JSONKind): JSONValue | null {
    const n = <usize>s.length;
    if (this.end - this.pos < n) return this.fail();
    for (let i: usize = 0; i < n; i++) {
      if (<u32>load<u8>(this.pos + i) != <u32>s.charCodeAt(<i32>i)) return this.fail();
    }
    this.pos += n;
    const v = new JSONValue();
    v.kind = kind;
    v.text = kind == JSONKind.Bool ? s : "";
    return v;
  }

  hex4(): i32 {
    if (this.end - this.pos < 4) return -1;
    let r = 0;
    for (let i = 0; i < 4; i++) {
      const c = <i32>load<u8>(this.pos++);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66) d = (c | 0x20) - 0x61 + 10;
      if (d < 0) return -1;
      r = r << 4 | d;
    }
    return r;
  }

  // str parses a string at pos (after the opening quote is checked).
  str(): string | null {
    this.pos++; // "
    let out = "";
    let run = this.pos;
    while (true) {
      if (this.pos >= this.end) return null;
      const c = load<u8>(this.pos);
      if (c == 0x22) break;
      if (c < 0x20) return null;
      if (c != 0x5c) { this.pos++; continue; }
      out += String.UTF8.decodeUnsafe(run, this.pos - run);
      this.pos++;
      if (this.pos >= this.end) return null;
      const e = load<u8>(this.pos++);
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        const u = this.hex4();
        if (u < 0) return null;
        out += String.fromCharCode(u); // UTF-16 code unit: pairs join as such
      } else return null;
      run = this.pos;
    }
    out += String.UTF8.decodeUnsafe(run, this.pos - run);
    this.pos++; // "
    return out;
  }

  value(depth: i32): JSONValue | null {
    if (depth > 64) return this.fail();
    this.ws();
    if (this.pos >= this.end) return this.fail();
    const c = load<u8>(this.pos);
    if (c == 0x22) {
      const s = this.str();
      if (s == null) return this.fail();
      const v = new JSONValue();
      v.kind = JSONKind.String;
      v.text = s;
      return v;
    }
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x74) return this.lit("true", JSONKind.Bool);
    if (c == 0x66) return this.lit("false", JSONKind.Bool);
    if (c == 0x6e) return this.lit("null", JSONKind.Null);
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      const s = this.pos;
      while (this.pos < this.end) {
        const d = load<u8>(this.pos);
        if (!((d >= 0x30 && d <= 0x39) || d == 0x2d || d == 0x2b || d == 0x2e || (d | 0x20) == 0x65)) break;
        this.pos++;
      }
      const v = new JSONValue();
      v.kind = JSONKind.Number;
      v.text = String.UTF8.decodeUnsafe(s, this.pos - s);
      return v;
    }
    return this.fail();
  }

  object(depth: i32): JSONValue | null {
    this.pos++; // {
    const v = new JSONValue();
    v.kind = JSONKind.Object;
    this.ws();
    if (this.pos < this.end && load<u8>(this.pos) == 0x7d) { this.pos++; return v; }
    while (true) {
      this.ws();
      if (this.pos >= this.end || load<u8>(this.pos) != 0x22) return this.fail();
      const k = this.str();
      if (k == null) return this.fail();
      this.ws();
      if (this.pos >= this.end || load<u8>(this.pos) != 0x3a) return this.fail();
      this.pos++;
      const item = this.value(depth + 1);
      if (item == null) return null;
      v.keys.push(k);
      v.items.push(item);
      this.ws();
      if (this.pos >= this.end) return this.fail();
      const c = load<u8>(this.pos++);
      if (c == 0x7d) return v;
      if (c != 0x2c) return this.fail();
    }
  }

  array(depth: i32): JSONValue | null {
    this.pos++; // [
    const v = new JSONValue();
    v.kind = JSONKind.Array;
    this.ws();
    if (this.pos < this.end && load<u8>(this.pos) == 0x5d) { this.pos++; return v; }
    while (true) {
      const item = this.value(depth + 1);
      if (item == null) return null;
      v.items.push(item);
      this.ws();
      if (this.pos >= this.end) return this.fail();
      const c = load<u8>(this.pos++);
      if (c == 0x5d) return v;
      if (c != 0x2c) return this.fail();
    }
  }
}

// parseJSON parses the len bytes at ptr (such as configBytes()'s view);
// null when they are not one JSON value.
export function parseJSON(ptr: usize, len: i32): JSONValue | null {
  const p = new Parser(ptr, ptr + <usize>len);
  const v = p.value(0);
  if (v == null) return null;
  p.ws();
  return p.pos == p.end ? v : null;
}

// quoteJSON returns s as a JSON string literal (quotes, backslashes and
// control characters escaped).
export function quoteJSON(s: string): string {
  const hex = "0123456789abcdef";
  let out = "\"";
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(run, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + hex.charAt(c >> 4) + hex.charAt(c & 15);
    run = i + 1;
  }
  return out + s.substring(run) + "\"";
}
