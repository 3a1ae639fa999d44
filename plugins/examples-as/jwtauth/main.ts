// jwtauth (AssemblyScript): the Go example plugins/examples/jwtauth, ported
// with the same config and answers. The session is a JWT in an
// "Authorization: Bearer" header or else a cookie, verified in the host
// (HS256 with a tenant secret, or ES256/RS256 with a JWKS from the plugin
// config). The user is the token's "sub"; listed claims go upstream.
//
//	config:
//	  cookie: session        # cookie holding the JWT; default "session"
//	  claims: [email, role]  # claims passed upstream as X-Safeclose-Claim-*
//	  jwt: {issuer: https://auth.example.com, audience: app}  # read by the host
//	secrets: {main: env:APP_JWT_SECRET}
//	capabilities: [config, crypto, log]
import * as sdk from "../../sdk-as/assembly";

let loaded = false;
let cookieName = "session";
let claimNames = new Array<string>(0);

function loadConfig(): void {
  if (loaded) return;
  loaded = true;
  const c = sdk.configBytes();
  if (c.len == 0) return;
  const v = sdk.parseJSON(c.ptr, c.len);
  if (v == null || !v.isObject()) {
    sdk.log(sdk.LevelError, "jwtauth: bad config: not a JSON object");
    return;
  }
  const ck = v.get("cookie"), cl = v.get("claims");
  if ((ck != null && !ck.isString()) || (cl != null && !cl.isArray())) {
    sdk.log(sdk.LevelError, "jwtauth: bad config: cookie must be a string, claims a list");
  }
  cookieName = v.str("cookie", cookieName);
  claimNames = v.strings("claims");
}

export function auth_handle(): i64 {
  loadConfig();
  // The view forms allocate nothing, so the request path never runs the
  // garbage collector. Each view is used before the next SDK call.
  let tok = sdk.bearerBytes();
  if (tok == null) {
    tok = sdk.cookieBytes(cookieName);
    if (tok == null) return sdk.deny(401);
  }
  const r = sdk.verifyJWTBytes(tok);
  if (r != sdk.JWTValid) {
    if (sdk.logEnabled(sdk.LevelDebug)) sdk.log(sdk.LevelDebug, "jwtauth: token refused, code " + r.toString());
    return sdk.deny(401);
  }
  const sub = sdk.jwtClaimBytes("sub");
  if (sub == null || !sdk.setSubjectBytes(sub)) return sdk.deny(401);
  for (let i = 0; i < claimNames.length; i++) {
    const name = unchecked(claimNames[i]);
    const v = sdk.jwtClaimBytes(name);
    if (v != null) sdk.setClaimBytes(name, v); // an oversized claim is simply not passed
  }
  return sdk.Allow;
}
