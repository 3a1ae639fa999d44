#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster and SAFECLOSE_TEST_PG_DSN
# pointing at it: installs Debian's postgresql when missing (as root), initdb in
# a temp dir as an unprivileged user, listens on a free loopback port only,
# and stops and removes the cluster afterwards, whatever the command's result.
#
#   scripts/with-postgres.sh go test ./...
#
# When SAFECLOSE_TEST_PG_DSN is already set, the command runs against it as is.
set -euo pipefail

if [[ -n "${SAFECLOSE_TEST_PG_DSN:-}" ]]; then exec "$@"; fi

pgbin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  return 1
}

if ! bin=$(pgbin); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "with-postgres: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bin=$(pgbin)
  else
    echo "with-postgres: PostgreSQL not installed and not root; PostgreSQL tests will skip (they fail with CI=true)" >&2
    exec "$@"
  fi
fi

# PostgreSQL refuses to run as root: use an unprivileged account.
runas=()
owner=$(id -un)
if [[ $(id -u) -eq 0 ]]; then
  owner=postgres
  getent passwd postgres >/dev/null || owner=nobody
  runas=(runuser -u "$owner" --)
fi

dir=$(mktemp -d /tmp/safeclose-pg.XXXXXX)
chown "$owner" "$dir"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)))

cleanup() {
  "${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"${runas[@]}" "$bin/initdb" -D "$dir/data" -U safeclose --auth=trust -E UTF8 >/dev/null
"${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" start >/dev/null

export SAFECLOSE_TEST_PG_DSN="postgres://safeclose@127.0.0.1:$port/postgres?sslmode=disable"
export SAFECLOSE_TEST_PG_BIN="$bin" SAFECLOSE_TEST_PG_DATA="$dir/data" SAFECLOSE_TEST_PG_PORT="$port"
export SAFECLOSE_TEST_PG_RUNAS="$owner"
echo "with-postgres: cluster on 127.0.0.1:$port ($bin)" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
