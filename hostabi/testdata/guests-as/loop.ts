// Guest loop (AssemblyScript) never returns when X-Loop is set.
import * as sdk from "../../../plugins/sdk-as/assembly";

let sink: i64 = 0;

export function auth_handle(): i64 {
  if (sdk.headerBytes("X-Loop") != null) {
    for (let i: i64 = 0; ; i++) {
      sink += i;
    }
  }
  sdk.setSubject("ok");
  return sdk.Allow;
}
