#!/usr/bin/env bash
# Build the example plugins into plugins/bin with the standard Go toolchain
# (GOOS=wasip1 GOARCH=wasm, reactor modules) and print their sha256 pins.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=plugins/bin
mkdir -p "$out"
for dir in plugins/examples/*/; do
  name=$(basename "$dir")
  GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o "$out/$name.wasm" "./$dir"
  printf '%s  %s\n' "$(sha256sum "$out/$name.wasm" | cut -d' ' -f1)" "$out/$name.wasm"
done
