// Guest oom (AssemblyScript) allocates without bound when X-OOM is set.
import * as sdk from "../../../plugins/sdk-as/assembly";

const keep = new Array<Uint8Array>(0);

export function auth_handle(): i64 {
  if (sdk.headerBytes("X-OOM") != null) {
    while (true) {
      const b = new Uint8Array(1 << 20);
      b[0] = 1;
      keep.push(b);
    }
  }
  sdk.setSubject("ok");
  return sdk.Allow;
}
