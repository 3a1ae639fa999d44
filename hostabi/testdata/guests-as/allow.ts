// Guest allow (AssemblyScript): the Go guest testdata/guests/allow, ported.
// The user is the X-User header; X-Role becomes a claim; "blocked" is
// denied with 403 and no header with 401. Its request path allocates
// nothing. BenchmarkEnforcement's trivial-as row.
import * as sdk from "../../../plugins/sdk-as/assembly";

export function auth_handle(): i64 {
  const u = sdk.headerBytes("X-User");
  if (u == null || u.len == 0) return sdk.deny(401);
  if (u.equals("blocked")) return sdk.deny(403);
  if (!sdk.setSubjectBytes(u)) return sdk.deny(400);
  const r = sdk.headerBytes("X-Role");
  if (r != null && !sdk.setClaimBytes("role", r)) return sdk.deny(400);
  return sdk.Allow;
}
