#!/usr/bin/env bash
# Prerequisite of the AssemblyScript plugins (plugins/sdk-as) and the web
# app's bundle (examples/webapp): node and npm. Installed from Debian's
# packages with apt-get when missing and running as root; otherwise what
# needs them skips, except with CI=true, where it must run.
set -euo pipefail
if command -v npm >/dev/null && command -v node >/dev/null; then
  exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "ensure-npm: installing nodejs and npm with apt-get" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
  exit 0
fi
if [[ ${CI:-} == true ]]; then
  echo "ensure-npm: npm is missing and this user cannot install it (apt-get install -y nodejs npm); CI=true needs it" >&2
  exit 1
fi
echo "ensure-npm: npm is missing; the AssemblyScript plugin tests and the browser test will skip (apt-get install -y nodejs npm)" >&2
