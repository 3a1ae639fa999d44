#!/usr/bin/env bash
# Compile one AssemblyScript plugin into a Safeclose reactor module:
#   bash plugins/sdk-as/asc.sh ENTRY.ts OUT.wasm
# Needs `npm ci` in plugins/sdk-as (the pinned assemblyscript). The flags,
# shared by plugins/build.sh and the tests (internal/testguest):
#   -O3                     speed;
#   --runtime incremental   automatic GC, so a plugin that allocates per
#                           request cannot fill its memory cap (RATIONALE.md);
#   --exportStart _initialize  the top-level code runs when the host calls
#                           _initialize, once per instance (config, log work);
#   --use abort=…           the SDK's abort traps instead of importing env.abort.
set -euo pipefail
sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
asc="$sdk/node_modules/.bin/asc"
if [[ ! -x $asc ]]; then
  echo "asc.sh: $asc is missing; run 'npm ci' in $sdk" >&2
  exit 1
fi
entry=$(realpath "$1") out=$(realpath -m "$2")
# asc names elements by their path relative to its working directory, and
# --use needs the SDK's abort by that name: work from / so the entry may be
# anywhere (it imports the SDK by a relative path).
root=/
cd "$root"
exec "$asc" "$(realpath --relative-to="$root" "$entry")" -o "$out" -O3 --runtime incremental \
  --exportStart _initialize --use "abort=$(realpath --relative-to="$root" "$sdk")/assembly/index/abort"
