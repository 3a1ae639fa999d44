// Guest probe (AssemblyScript): the Go guest testdata/guests/probe, ported.
// It reads every accessor and reports what it saw as claims, so each SDK
// function and the host side of it are checked end to end.
import * as sdk from "../../../plugins/sdk-as/assembly";

function claim(k: string, v: string): void {
  if (!sdk.setClaim(k, v)) sdk.setClaim("err-" + k, "rejected");
}

function hex(b: sdk.Bytes, n: i32): string {
  const digits = "0123456789abcdef";
  let s = "";
  for (let i = 0; i < n; i++) {
    const c = <i32>b.at(i);
    s += digits.charAt(c >> 4) + digits.charAt(c & 15);
  }
  return s;
}

function unhex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = <u8>I32.parseInt(s.substr(2 * i, 2), 16);
  return out;
}

export function auth_handle(): i64 {
  claim("method", sdk.method());
  claim("uri", sdk.uri());
  claim("path", sdk.path());
  claim("multi", sdk.headerValues("X-Multi").join(","));
  claim("names", sdk.headerNames().length.toString());
  const sid = sdk.cookie("sid");
  claim("sid", (sid == null ? "" : sid) + "|" + (sid != null ? "true" : "false"));
  claim("source", sdk.sourceAddr());
  claim("config", sdk.config());
  claim("body", String.UTF8.decode(sdk.body().buffer));
  claim("clock", sdk.now() > 1577836800000000000 ? "true" : "false"); // after 2020-01-01
  let n = 0;
  const v = sdk.kvGet("count");
  if (v != null) n = I32.parseInt(String.UTF8.decode(v.buffer));
  n++;
  sdk.kvSet("count", sdk.bytesOf(n.toString()), 60);
  claim("count", n.toString());
  claim("sha", hex(sdk.sha256Bytes(sdk.bytesOf("abc")), 4));
  const long = "x".repeat(3000); // bigger than the SDK's first buffer
  const xl = sdk.header("X-Long");
  if (xl != null) claim("long", xl == long ? "true" : "false");
  const xm = sdk.header("X-Mac");
  const mac = unhex(xm == null ? "" : xm);
  const h = sdk.hmacSHA256Verify("hk", sdk.bytesOf("msg"), new sdk.Bytes(mac.dataStart, mac.length));
  claim("hmac", h == 1 ? "true" : h == 0 ? "false" : "nokey");
  const tok = sdk.bearer();
  if (tok != null) {
    claim("jwt", sdk.verifyJWT(tok).toString());
    const sub = sdk.jwtClaim("sub");
    if (sub != null) claim("jwt-sub", sub);
  }
  if (sdk.setClaim("Bad Name", "x")) claim("badname", "accepted");
  if (sdk.setSubject("evil\r\nX-Injected: 1")) claim("inject", "accepted");
  sdk.log(sdk.LevelInfo, "probe ran");
  sdk.setSubject("probe");
  return sdk.Allow;
}
