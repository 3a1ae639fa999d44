// number: a JSON number's text turned into what Go's encoding/json writes
// for it after decoding it into an interface{} (a float64): the nearest
// float64 (strconv.ParseFloat: ties to even; out of range is an error),
// written as the shortest decimal that reads back as it (strconv's 'f' or,
// below 1e-6 or from 1e21 on, 'e' form with "e-07" shortened to "e-7").
// Exact arithmetic on small big integers; the common cases (up to 15
// digits and a power of ten up to 22) take exact float64 shortcuts.

// Big is an unsigned integer in base 2^32 limbs, least significant first.
class Big {
  d: u32[] = [];

  static of(x: u64): Big {
    const b = new Big();
    while (x != 0) { b.d.push(<u32>x); x >>= 32; }
    return b;
  }

  clone(): Big {
    const b = new Big();
    b.d = this.d.slice(0);
    return b;
  }

  trim(): void {
    while (this.d.length > 0 && this.d[this.d.length - 1] == 0) this.d.pop();
  }

  mulSmall(m: u32): Big {
    let carry: u64 = 0;
    for (let i = 0; i < this.d.length; i++) {
      const t = <u64>unchecked(this.d[i]) * <u64>m + carry;
      unchecked((this.d[i] = <u32>t));
      carry = t >> 32;
    }
    if (carry != 0) this.d.push(<u32>carry);
    this.trim();
    return this;
  }

  addSmall(a: u32): Big {
    let carry: u64 = a;
    for (let i = 0; i < this.d.length && carry != 0; i++) {
      const t = <u64>unchecked(this.d[i]) + carry;
      unchecked((this.d[i] = <u32>t));
      carry = t >> 32;
    }
    if (carry != 0) this.d.push(<u32>carry);
    return this;
  }

  mulPow10(k: i32): Big {
    while (k >= 9) { this.mulSmall(1000000000); k -= 9; }
    let m: u32 = 1;
    while (k > 0) { m *= 10; k--; }
    if (m != 1) this.mulSmall(m);
    return this;
  }

  shl(n: i32): Big {
    if (this.d.length == 0 || n == 0) return this;
    const w = n >> 5, s = n & 31;
    if (s != 0) {
      let carry: u32 = 0;
      for (let i = 0; i < this.d.length; i++) {
        const x = unchecked(this.d[i]);
        unchecked((this.d[i] = x << s | carry));
        carry = x >> (32 - s);
      }
      if (carry != 0) this.d.push(carry);
    }
    if (w > 0) {
      const z = new Array<u32>(w);
      this.d = z.concat(this.d);
    }
    return this;
  }

  add(b: Big): Big {
    let carry: u64 = 0;
    const n = max(this.d.length, b.d.length);
    for (let i = 0; i < n; i++) {
      const t = <u64>(i < this.d.length ? this.d[i] : 0) + <u64>(i < b.d.length ? b.d[i] : 0) + carry;
      if (i < this.d.length) this.d[i] = <u32>t;
      else this.d.push(<u32>t);
      carry = t >> 32;
    }
    if (carry != 0) this.d.push(<u32>carry);
    return this;
  }

  // sub subtracts b (not larger than this).
  sub(b: Big): Big {
    let borrow: i64 = 0;
    for (let i = 0; i < this.d.length; i++) {
      let t = <i64>unchecked(this.d[i]) - <i64>(i < b.d.length ? b.d[i] : 0) - borrow;
      borrow = 0;
      if (t < 0) { t += <i64>1 << 32; borrow = 1; }
      unchecked((this.d[i] = <u32>t));
    }
    this.trim();
    return this;
  }

  bitLen(): i32 {
    const n = this.d.length;
    if (n == 0) return 0;
    return (n - 1) * 32 + 32 - <i32>clz(this.d[n - 1]);
  }

  isZero(): bool { return this.d.length == 0; }
}

function cmp(a: Big, b: Big): i32 {
  if (a.d.length != b.d.length) return a.d.length < b.d.length ? -1 : 1;
  for (let i = a.d.length - 1; i >= 0; i--) {
    const x = unchecked(a.d[i]), y = unchecked(b.d[i]);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

// Exact powers of ten as float64.
const pow10: StaticArray<f64> = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

// Status of the last toFloat.
export let rangeError = false;

// toFloat is strconv.ParseFloat(text, 64) for text in JSON's number
// grammar; rangeError is set when it is out of float64's range.
export function toFloat(t: Uint8Array): f64 {
  rangeError = false;
  let i = 0;
  const n = t.length;
  let neg = false;
  if (unchecked(t[0]) == 0x2d) { neg = true; i++; }
  // Significant digits (leading zeros skipped) and the decimal exponent.
  const digits = new Array<u8>(0);
  let exp10: i64 = 0;
  let frac = false;
  for (; i < n; i++) {
    const c = unchecked(t[i]);
    if (c == 0x2e) { frac = true; continue; }
    if (c < 0x30 || c > 0x39) break;
    if (frac) exp10--;
    if (digits.length == 0 && c == 0x30) continue;
    digits.push(c - 0x30);
  }
  if (i < n) { // e[+-]digits
    i++;
    let eneg = false;
    if (unchecked(t[i]) == 0x2b) i++;
    else if (unchecked(t[i]) == 0x2d) { eneg = true; i++; }
    let e: i64 = 0;
    for (; i < n; i++) {
      if (e < 100000000) e = e * 10 + <i64>(unchecked(t[i]) - 0x30);
    }
    exp10 += eneg ? -e : e;
  }
  while (digits.length > 0 && digits[digits.length - 1] == 0) { digits.pop(); exp10++; }
  const nd = digits.length;
  const zero: f64 = 0;
  if (nd == 0) return neg ? -zero : zero;
  if (<i64>nd + exp10 > 310) { rangeError = true; return neg ? -Infinity : Infinity; }
  if (<i64>nd + exp10 <= -324) return neg ? -zero : zero;
  const e10 = <i32>exp10;
  let f: f64;
  if (nd <= 15 && e10 >= -22 && e10 <= 22) {
    let m: u64 = 0;
    for (let j = 0; j < nd; j++) m = m * 10 + <u64>digits[j];
    f = <f64>m;
    f = e10 >= 0 ? f * unchecked(pow10[e10]) : f / unchecked(pow10[-e10]);
  } else {
    f = slowFloat(digits, e10);
    if (f == Infinity) { rangeError = true; }
  }
  return neg ? -f : f;
}

// slowFloat rounds digits × 10^e10 to the nearest float64 (ties to even)
// with big integers: q = ⌊num / (den·2^e)⌋ with 53 bits, then the rest
// decides the rounding.
function slowFloat(digits: u8[], e10: i32): f64 {
  const num = new Big();
  for (let j = 0; j < digits.length; j++) num.mulSmall(10).addSmall(digits[j]);
  const den = Big.of(1);
  if (e10 >= 0) num.mulPow10(e10);
  else den.mulPow10(-e10);
  let e = num.bitLen() - den.bitLen() - 53;
  if (e < -1074) e = -1074;
  let q: u64 = 0;
  let rest = new Big();
  let d2 = new Big();
  for (let tries = 0; tries < 8; tries++) {
    const n2 = num.clone();
    d2 = den.clone();
    if (e >= 0) d2.shl(e);
    else n2.shl(-e);
    // Long division, one quotient bit at a time (q < 2^56).
    q = 0;
    for (let b = 55; b >= 0; b--) {
      const t = d2.clone().shl(b);
      if (cmp(n2, t) >= 0) { n2.sub(t); q |= <u64>1 << b; }
    }
    rest = n2;
    if (q >= <u64>1 << 53) { e++; continue; }
    if (q < <u64>1 << 52 && e > -1074) { e--; continue; }
    break;
  }
  rest.shl(1);
  const c = cmp(rest, d2);
  if (c > 0 || (c == 0 && (q & 1) != 0)) q++;
  if (q == <u64>1 << 53) { q = <u64>1 << 52; e++; }
  if (e > 971) return Infinity;
  let bits: u64;
  if (q < <u64>1 << 52) bits = q; // subnormal (e is -1074)
  else bits = (<u64>(e + 1075) << 52) | (q - (<u64>1 << 52));
  return reinterpret<f64>(bits);
}

// shortest's decimal point: v ≈ 0.digits × 10^point.
export let point: i32 = 0;

// shortest returns the shortest digits that read back as v (> 0, finite),
// the nearest of them to v (of two as near, the one ending in an even
// digit, as strconv does), and sets point (Steele & White / Burger &
// Dybvig, with exact integers).
export function shortest(v: f64): u8[] {
  const bits = reinterpret<u64>(v);
  const be = <i32>(bits >> 52) & 0x7ff;
  let mant = bits & ((<u64>1 << 52) - 1);
  let e: i32;
  if (be == 0) e = -1074;
  else { mant |= <u64>1 << 52; e = be - 1075; }
  const even = (mant & 1) == 0;
  const edge = mant == <u64>1 << 52 && be > 1; // the gap below is half the gap above
  let r: Big, s: Big, mp: Big, mm: Big;
  if (e >= 0) {
    if (!edge) { r = Big.of(mant).shl(e + 1); s = Big.of(2); mp = Big.of(1).shl(e); mm = Big.of(1).shl(e); }
    else { r = Big.of(mant).shl(e + 2); s = Big.of(4); mp = Big.of(1).shl(e + 1); mm = Big.of(1).shl(e); }
  } else {
    if (!edge) { r = Big.of(mant).shl(1); s = Big.of(1).shl(1 - e); mp = Big.of(1); mm = Big.of(1); }
    else { r = Big.of(mant).shl(2); s = Big.of(1).shl(2 - e); mp = Big.of(2); mm = Big.of(1); }
  }
  let k = <i32>Math.ceil(Math.log10(v));
  if (k >= 0) s.mulPow10(k);
  else { r.mulPow10(-k); mp.mulPow10(-k); mm.mulPow10(-k); }
  // Fix the estimate: the high end r+m+ must be below s (or at it when the
  // bounds are exclusive), and not below s/10.
  while (true) {
    const c = cmp(r.clone().add(mp), s);
    if (even ? c >= 0 : c > 0) { s.mulSmall(10); k++; } else break;
  }
  while (true) {
    const c = cmp(r.clone().add(mp).mulSmall(10), s);
    if (even ? c < 0 : c <= 0) { r.mulSmall(10); mp.mulSmall(10); mm.mulSmall(10); k--; } else break;
  }
  const out = new Array<u8>(0);
  while (true) {
    r.mulSmall(10); mp.mulSmall(10); mm.mulSmall(10);
    let d: u8 = 0;
    while (cmp(r, s) >= 0) { r.sub(s); d++; }
    const c1 = cmp(r, mm);
    const low = even ? c1 <= 0 : c1 < 0;
    const c2 = cmp(r.clone().add(mp), s);
    const high = even ? c2 >= 0 : c2 > 0;
    if (!low && !high) { out.push(d); continue; }
    if (low && high) {
      const c = cmp(r.clone().shl(1), s);
      if (c > 0 || (c == 0 && (d & 1) != 0)) d++;
    } else if (high) d++;
    out.push(d);
    break;
  }
  // A rounded-up last digit may carry.
  let j = out.length - 1;
  while (j > 0 && out[j] == 10) { out[j] = 0; out[j - 1]++; j--; }
  if (out[0] == 10) { out[0] = 1; k++; }
  while (out.length > 1 && out[out.length - 1] == 0) out.pop();
  point = k;
  return out;
}

// format returns encoding/json's text for v (finite).
export function format(v: f64): string {
  if (v == 0) return (reinterpret<u64>(v) >> 63) != 0 ? "-0" : "0";
  let out = v < 0 ? "-" : "";
  const a = Math.abs(v);
  const d = shortest(a);
  const dp = point;
  const nd = d.length;
  if (a < 1e-6 || a >= 1e21) {
    out += String.fromCharCode(0x30 + d[0]);
    if (nd > 1) {
      out += ".";
      for (let i = 1; i < nd; i++) out += String.fromCharCode(0x30 + d[i]);
    }
    const x = dp - 1;
    out += x < 0 ? "e-" : "e+";
    const ax = x < 0 ? -x : x;
    // strconv writes at least two exponent digits; encoding/json then
    // turns e-0N into e-N (not e+0N).
    if (ax < 10 && x >= 0) out += "0";
    out += ax.toString();
    return out;
  }
  if (dp > 0) {
    for (let i = 0; i < dp; i++) out += i < nd ? String.fromCharCode(0x30 + d[i]) : "0";
  } else out += "0";
  if (nd > dp) {
    out += ".";
    for (let i = dp; i < nd; i++) out += i < 0 ? "0" : String.fromCharCode(0x30 + d[i]);
  }
  return out;
}
