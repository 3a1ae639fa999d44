#!/usr/bin/env bash
# Build the example plugins into plugins/bin and print their sha256 pins:
# the Go ones with the standard Go toolchain (GOOS=wasip1 GOARCH=wasm,
# reactor modules), then the AssemblyScript ports (plugins/examples-as/NAME
# -> NAME-as.wasm) with the compiler pinned in plugins/sdk-as, installed by
# `npm ci`. Without npm those are skipped, unless CI=true (then it fails).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=plugins/bin
mkdir -p "$out"
pin() { printf '%s  %s\n' "$(sha256sum "$1" | cut -d' ' -f1)" "$1"; }
for dir in plugins/examples/*/; do
  name=$(basename "$dir")
  GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o "$out/$name.wasm" "./$dir"
  pin "$out/$name.wasm"
done
if ! command -v npm >/dev/null; then
  if [[ ${CI:-} == true ]]; then
    echo "build.sh: npm is missing; CI=true needs it for the AssemblyScript plugins (apt-get install -y nodejs npm)" >&2
    exit 1
  fi
  echo "build.sh: npm is missing; skipping the AssemblyScript plugins (plugins/examples-as)" >&2
  exit 0
fi
sdk=plugins/sdk-as
if [[ ! -f $sdk/node_modules/.package-lock.json || $sdk/package-lock.json -nt $sdk/node_modules/.package-lock.json ]]; then
  (cd "$sdk" && npm ci --no-audit --no-fund)
fi
for dir in plugins/examples-as/*/; do
  name=$(basename "$dir")
  bash "$sdk/asc.sh" "$dir/main.ts" "$out/$name-as.wasm"
  pin "$out/$name-as.wasm"
done
