#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: the
# plain fasthttp proxy from ../shared/perf-anchors (rpfast) beside each of
# Safeclose's auth paths, the same upstream, the same fixed number of
# requests (internal/bench/fixedload). Callgrind counts the instructions a
# process runs in user space, not time: the count repeats to within a
# fraction of a percent whatever else the machine does, where wrk's req/s on
# a shared 2-core VM moves ±25% between rounds. It does not see the kernel
# (about three quarters of a proxied request's CPU here: loopback TCP and
# scheduling), so it complements load.sh, it does not replace it.
#
#   bash internal/bench/instructions.sh              # N=20000, ~5 minutes
#   N=5000 TARGETS="rp nocache" bash internal/bench/instructions.sh
#   CACHE=1 N=5000 bash internal/bench/instructions.sh  # also L1 misses
#
# CACHE=1 adds callgrind's cache simulation: first-level instruction and
# data misses per request (each costs ~10–15 cycles when the second level
# has the line), counted from the machine's cache sizes. Startup then
# runs uninstrumented (compiling the Wasm guests under the simulation
# takes minutes), so the instruction counts are close to, not identical
# with, a run without it; compare CACHE=1 runs with each other.
#
# The totals are the figure to trust. Per function, callgrind_annotate
# --auto=no $BASE/instr-*/cg.<target> often gives sound self costs, but
# Go's goroutine switches can corrupt callgrind's call tree (names with a
# '2 suffix, shares over 100%): then rerun, or compare totals only. Under
# valgrind the CPU features differ: SHA-256 runs without the SHA
# extensions, so the api_keys path's digest costs several times what it
# costs natively.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ANCHORS="${ANCHORS:-$ROOT/../shared/perf-anchors}"
BASE="${BASE:-/tmp/safeclose-bench}"
N="${N:-20000}"; WARM="${WARM:-2000}"; CONNS="${CONNS:-8}"
TARGETS="${TARGETS:-rp apikeys cached nocache nocache-as}"
RUN="$BASE/instr-$(date +%Y%m%d-%H%M%S)"; BIN="$RUN/bin"
mkdir -p "$RUN/data" "$BIN"
log() { printf '[instructions] %s\n' "$*" >&2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

[[ -d $ANCHORS ]] || { log "perf-anchors not found at $ANCHORS (set ANCHORS=)"; exit 1; }
if ! command -v valgrind >/dev/null; then
  [[ $(id -u) == 0 ]] || { log "valgrind missing: apt-get install -y valgrind"; exit 1; }
  log "installing valgrind"
  apt-get update -q >"$RUN/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >>"$RUN/apt.log" 2>&1
fi

# Static binaries (callgrind trips over cgo's thread start) and no
# asynchronous preemption (its signals confuse callgrind's thread tracking).
log "building"
(cd "$ANCHORS" && CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./cmd/upstream ./cmd/rpfast ./cmd/tool)
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./cmd/safeclose ./internal/bench/fixedload && bash plugins/build.sh >/dev/null)
export GODEBUG=asyncpreemptoff=1
WASM="$ROOT/plugins/bin/jwtauth.wasm" WASM_AS="$ROOT/plugins/bin/jwtauth-as.wasm"
SUM=$(sha256sum "$WASM" | cut -d' ' -f1) SUM_AS=$(sha256sum "$WASM_AS" | cut -d' ' -f1)
TOKEN=$("$BIN/tool" token -ttl 1h)
TOKEN_SHA=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
plugin() { # name path sum ttl
  echo "{name: $1, path: $2, sha256: $3, capabilities: [config, crypto, log], cache_ttl: $4, config: {jwt: {issuer: perf-anchors, audience: edge-proxy}}, secrets: {main: env:BENCH_JWT_SECRET}}"
}
tenant() { # name auth
  printf '  - name: %s\n    hosts: [%s.bench]\n    upstream: http://127.0.0.1:19181\n    plaid: {env: emulator, client_name: Bench, products: [transactions], country_codes: [US], language: en}\n    auth:\n      %s\n' "$1" "$1" "$2"
}
{
  echo "listen: 127.0.0.1:19190"
  echo "admin_listen: 127.0.0.1:19191"
  echo "data_dir: $RUN/data"
  echo "keys: env:SAFECLOSE_KEYS"
  echo "log_level: warn"
  echo "emulator: {enabled: true, listen: 127.0.0.1:19192}"
  echo "tenants:"
  tenant apikeys "api_keys: [{sha256: $TOKEN_SHA, user: bench}]"
  tenant cached "plugin: $(plugin jwtauth "$WASM" "$SUM" 30s)"
  tenant nocache "plugin: $(plugin jwtauth "$WASM" "$SUM" 0s)"
  tenant nocache-as "plugin: $(plugin jwtauth-as "$WASM_AS" "$SUM_AS" 0s)"
} >"$RUN/safeclose.yaml"

VG=(valgrind --tool=callgrind --dump-instr=no)
[[ -n ${CACHE:-} ]] && VG+=(--cache-sim=yes --instr-atstart=no)
"$BIN/upstream" -addr 127.0.0.1:19181 >"$RUN/upstream.log" 2>&1 & PIDS+=($!)
"${VG[@]}" --callgrind-out-file="$RUN/cg.rpfast.%p" "$BIN/rpfast" -addr 127.0.0.1:19182 -upstream 127.0.0.1:19181 \
  >"$RUN/rpfast.log" 2>&1 & RP=$!; PIDS+=($RP)
SAFECLOSE_KEYS="bench:$(head -c32 /dev/urandom | base64)" BENCH_JWT_SECRET="perf-anchors-demo-hs256-secret!!" \
  "${VG[@]}" --callgrind-out-file="$RUN/cg.safeclose.%p" "$BIN/safeclose" serve -config "$RUN/safeclose.yaml" \
  >"$RUN/safeclose.log" 2>&1 & SC=$!; PIDS+=($SC)
"$BIN/tool" waitport -addr 127.0.0.1:19181,127.0.0.1:19182,127.0.0.1:19190 -timeout 300s \
  || { tail -n 20 "$RUN"/*.log >&2; exit 1; }

# count pid target addr host: warm up, zero the counters, send N, dump.
count() {
  callgrind_control -i on "$1" >/dev/null 2>&1 # instrumentation on (off at start under CACHE=1)
  "$BIN/fixedload" -addr "$3" -host "$4" -token "$TOKEN" -n "$WARM" -c "$CONNS" || log "$2: warm-up requests failed (a plugin timeout under valgrind's slowness is possible)"
  callgrind_control -z "$1" >/dev/null 2>&1
  "$BIN/fixedload" -addr "$3" -host "$4" -token "$TOKEN" -n "$N" -c "$CONNS"
  callgrind_control -d "$2" "$1" >/dev/null 2>&1
  local f="" i
  for i in $(seq 50); do # the dump is written by the target process: wait for it (10 s at most)
    f=$(grep -l "^desc: Trigger: dump $2\$" "$RUN"/cg.*.*.* 2>/dev/null | head -1) || true
    [[ -n $f ]] && grep -q '^totals:' "$f" && break
    sleep 0.2
  done
  [[ -n $f ]] || { log "$2: no callgrind dump"; exit 1; }
  mv "$f" "$RUN/cg.$2"
}
declare -A IR I1 D1
for t in $TARGETS; do
  log "$t: $N requests"
  if [[ $t == rp ]]; then count "$RP" rp 127.0.0.1:19182 any; else count "$SC" "$t" 127.0.0.1:19190 "$t.bench"; fi
  IR[$t]=$(awk '/^summary:/ {print $2}' "$RUN/cg.$t")
  if [[ -n ${CACHE:-} ]]; then # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    I1[$t]=$(awk '/^summary:/ {print $5}' "$RUN/cg.$t")
    D1[$t]=$(awk '/^summary:/ {print $6 + $7}' "$RUN/cg.$t")
  fi
done
{
  echo "Instructions per request (callgrind, user space), $(date -u '+%F %H:%M') UTC, $N requests over $CONNS connections after $WARM to warm up, main at $(cd "$ROOT" && git rev-parse --short HEAD)"
  for t in $TARGETS; do
    awk -v t="$t" -v ir="${IR[$t]}" -v n="$N" -v rp="${IR[rp]:-0}" -v i1="${I1[$t]:-}" -v d1="${D1[$t]:-}" 'BEGIN {
      printf "%-12s %8.0f instr/req", t, ir/n; if (rp > 0) printf "   %.2f× rpfast", ir/rp
      if (i1 != "") printf "   L1 misses/req: %.0f instruction, %.0f data", i1/n, d1/n
      print "" }'
  done
  echo "callgrind files: $RUN/cg.<target>"
} | tee "$RUN/results.txt"
