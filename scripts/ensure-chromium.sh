#!/usr/bin/env bash
# Prerequisite of the browser test (examples/webapp, `make test-deps`):
# Debian's chromium. Installed with apt-get when missing and running as
# root; otherwise the test skips, except with CI=true, where it must run.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "ensure-chromium: installing chromium with apt-get" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  exit 0
fi
if [[ ${CI:-} == true ]]; then
  echo "ensure-chromium: chromium is missing and this user cannot install it (apt-get install -y chromium); CI=true needs it" >&2
  exit 1
fi
echo "ensure-chromium: chromium is missing; the browser test will skip (apt-get install -y chromium)" >&2
