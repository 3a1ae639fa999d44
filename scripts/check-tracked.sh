#!/usr/bin/env bash
# Fails when a tracked file is binary or larger than 1 MB, unless it is named
# in .ci/tracked-allow (one path per line; '#' starts a comment).
# Issue 10.1: a 32 MB ELF was tracked at the root for weeks before anyone noticed.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
limit=$((1024 * 1024))
declare -A allow=()
if [[ -f .ci/tracked-allow ]]; then
  while IFS= read -r line; do
    line="${line%%#*}"; line="${line//[[:space:]]/}"
    [[ -n "$line" ]] && allow["$line"]=1
  done < .ci/tracked-allow
fi
bad=0
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] || continue
  [[ -n "${allow[$f]:-}" ]] && continue
  size=$(stat -c %s "$f")
  if (( size > limit )); then
    echo "tracked file over 1 MB: $f ($size bytes)" >&2; bad=1; continue
  fi
  # grep -I treats a file with a NUL byte as binary; empty files are fine.
  if (( size > 0 )) && ! grep -qI . "$f"; then
    echo "tracked binary file: $f" >&2; bad=1
  fi
done < <(git ls-files -z)
if (( bad )); then
  echo "untrack it (git rm --cached) or, if it must be tracked, name it in .ci/tracked-allow" >&2
  exit 1
fi
