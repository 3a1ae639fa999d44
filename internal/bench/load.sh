#!/usr/bin/env bash
# Load harness: Safeclose against the proxies users would pick instead, all
# measured in the same run, interleaved (A B C, then C B A, …), with the same wrk
# flags as ../shared/perf-anchors. One Safeclose process serves three tenants,
# chosen by Host:
#
#   upstream           the app (fasthttp, 200 + small body)
#   rp-fasthttp        plain fasthttp reverse proxy, no auth: the floor
#   nginx-plain        nginx proxying, no auth
#   nginx-auth_request nginx + auth_request to a Go JWT service
#   safeclose-nocache  jwtauth.wasm plugin (HS256 checked in the host), decision cache off
#   safeclose-nocache-as  the same config with jwtauth-as.wasm (the AssemblyScript SDK's port)
#   safeclose          the same with cache_ttl=$CACHE_TTL (default 30s)
#   safeclose-apikeys  built-in api_keys, no plugin
#
# Baseline binaries and nginx.conf come from the perf-anchors folder
# (ANCHORS=…, default ../shared/perf-anchors next to the repo). Needs wrk and
# nginx-light (installed from Debian when missing and running as root).
#
# Each ratio is printed twice: the ratio of the two targets' median req/s,
# and in brackets the median over rounds of the ratio within each round
# (paired: both sides of it ran within the same minute, so a slow phase of
# the machine moves both).
#
# Knobs: DURATION=6s ROUNDS=5 CONNS=32 THREADS=1 WARMUP=2s BASE=/tmp/safeclose-bench
#        CACHE_TTL=30s (the cached tenant's decision cache)
#        SUMMARY=path (also write "target<TAB>median req/s<TAB>p99<TAB>CPU-µs/req" lines there,
#        and "pair:num/den<TAB>median of the per-round ratios" lines,
#        for internal/bench/table)
# Without the anchors folder (CI, a fresh clone) it says so and exits 0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ANCHORS="${ANCHORS:-$ROOT/../shared/perf-anchors}"
BASE="${BASE:-/tmp/safeclose-bench}"
DURATION="${DURATION:-6s}"; ROUNDS="${ROUNDS:-5}"; CONNS="${CONNS:-32}"; THREADS="${THREADS:-1}"; WARMUP="${WARMUP:-2s}"; CACHE_TTL="${CACHE_TTL:-30s}"
TARGETS=(rp-fasthttp nginx-plain nginx-auth_request safeclose-nocache safeclose safeclose-apikeys safeclose-nocache-as)
declare -A PORT=([upstream]=18081 [rp-fasthttp]=18082 [nginx-auth_request]=18084 [authsvc]=18085 [nginx-plain]=18087
  [safeclose]=18090 [safeclose-nocache]=18090 [safeclose-apikeys]=18090 [safeclose-nocache-as]=18090)
declare -A HOSTHDR=([safeclose]=cached.bench [safeclose-nocache]=nocache.bench [safeclose-apikeys]=apikeys.bench
  [safeclose-nocache-as]=nocache-as.bench)
RUN="$BASE/run-$(date +%Y%m%d-%H%M%S)"; BIN="$BASE/bin"
mkdir -p "$RUN"/{wrk,logs,nginx/logs,nginx/tmp} "$BIN"
PIDS=()
log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [[ ! -d $ANCHORS ]]; then log "perf-anchors not found at $ANCHORS (set ANCHORS=): load rows skipped"; exit 0; fi
need=(); command -v wrk >/dev/null || need+=(wrk); command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}: apt-get install -y ${need[*]}"
  log "installing ${need[*]}"; apt-get update -q >"$RUN/logs/apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$RUN/logs/apt.log" 2>&1
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "building baselines from $ANCHORS and Safeclose from $ROOT"
(cd "$ANCHORS" && go build -trimpath -o "$BIN/" ./cmd/upstream ./cmd/rpfast ./cmd/authsvc ./cmd/tool)
(cd "$ROOT" && go build -trimpath -o "$BIN/safeclose" ./cmd/safeclose && bash plugins/build.sh >/dev/null)
WASM="$ROOT/plugins/bin/jwtauth.wasm"
SUM=$(sha256sum "$WASM" | cut -d' ' -f1)
WASM_AS="$ROOT/plugins/bin/jwtauth-as.wasm"
SUM_AS=$(sha256sum "$WASM_AS" | cut -d' ' -f1)
SECRET="perf-anchors-demo-hs256-secret!!"  # the anchors' demo HS256 key (authz.DefaultSecret)
TOKEN=$("$BIN/tool" token -ttl 1h)
TOKEN_SHA=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)  # the api_keys tenant accepts the same bearer

cat >"$RUN/safeclose.yaml" <<YAML
listen: 127.0.0.1:${PORT[safeclose]}
admin_listen: 127.0.0.1:18091
data_dir: $RUN/data
keys: env:SAFECLOSE_KEYS
log_level: warn
emulator: {enabled: true, listen: 127.0.0.1:18092}
tenants:
  - name: bench
    hosts: [cached.bench, 127.0.0.1]
    upstream: http://127.0.0.1:${PORT[upstream]}
    plaid: {env: emulator, client_name: Bench, products: [transactions], country_codes: [US], language: en}
    auth:
      plugin:
        name: jwtauth
        path: $WASM
        sha256: $SUM
        capabilities: [config, crypto, log]
        cache_ttl: $CACHE_TTL       # a session's repeated token skips the guest (never past the token's exp)
        config: {jwt: {issuer: perf-anchors, audience: edge-proxy}}
        secrets: {main: env:BENCH_JWT_SECRET}
  - name: nocache
    hosts: [nocache.bench]
    upstream: http://127.0.0.1:${PORT[upstream]}
    plaid: {env: emulator, client_name: Bench, products: [transactions], country_codes: [US], language: en}
    auth:
      plugin:
        name: jwtauth
        path: $WASM
        sha256: $SUM
        capabilities: [config, crypto, log]
        cache_ttl: 0s
        config: {jwt: {issuer: perf-anchors, audience: edge-proxy}}
        secrets: {main: env:BENCH_JWT_SECRET}
  - name: nocache-as
    hosts: [nocache-as.bench]
    upstream: http://127.0.0.1:${PORT[upstream]}
    plaid: {env: emulator, client_name: Bench, products: [transactions], country_codes: [US], language: en}
    auth:
      plugin:
        name: jwtauth-as
        path: $WASM_AS
        sha256: $SUM_AS
        capabilities: [config, crypto, log]
        cache_ttl: 0s
        config: {jwt: {issuer: perf-anchors, audience: edge-proxy}}
        secrets: {main: env:BENCH_JWT_SECRET}
  - name: apikeys
    hosts: [apikeys.bench]
    upstream: http://127.0.0.1:${PORT[upstream]}
    plaid: {env: emulator, client_name: Bench, products: [transactions], country_codes: [US], language: en}
    auth:
      api_keys: [{sha256: $TOKEN_SHA, user: bench}]
YAML

start() { local name=$1; shift; "$@" >"$RUN/logs/$name.log" 2>&1 & PIDS+=($!); }
start upstream "$BIN/upstream" -addr "127.0.0.1:${PORT[upstream]}"
start rp-fasthttp "$BIN/rpfast" -addr "127.0.0.1:${PORT[rp-fasthttp]}" -upstream "127.0.0.1:${PORT[upstream]}"
start authsvc "$BIN/authsvc" -addr "127.0.0.1:${PORT[authsvc]}"
start nginx "$NGINX" -p "$RUN/nginx/" -c "$ANCHORS/nginx.conf" -e "$RUN/nginx/logs/error.log"
SAFECLOSE_KEYS="bench:$(head -c32 /dev/urandom | base64)" BENCH_JWT_SECRET="$SECRET" \
  start safeclose "$BIN/safeclose" serve -config "$RUN/safeclose.yaml"
"$BIN/tool" waitport -addr "127.0.0.1:${PORT[upstream]},127.0.0.1:${PORT[rp-fasthttp]},127.0.0.1:${PORT[nginx-auth_request]},127.0.0.1:${PORT[nginx-plain]},127.0.0.1:${PORT[safeclose]}" -timeout 60s \
  || { tail -n 20 "$RUN"/logs/*.log >&2; die "servers did not come up"; }

for t in "${TARGETS[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: ${HOSTHDR[$t]:-127.0.0.1}" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$t]}/")
  [[ $code == 200 ]] || die "$t answered $code with a valid token"
done
for t in nginx-auth_request safeclose-nocache safeclose safeclose-apikeys safeclose-nocache-as; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: ${HOSTHDR[$t]:-127.0.0.1}" -H "Authorization: Bearer bad" "http://127.0.0.1:${PORT[$t]}/")
  [[ $code == 401 ]] || die "$t answered $code to a bad token"
done
log "sanity checks passed (200 with the token, 401 with a bad one)"

# CPU a target's serving processes used (utime+stime, clock ticks): the
# proxy itself; for nginx its workers, plus the auth service for
# auth_request. Sampled around each run, it gives CPU-µs per request, which
# a busy VM's speed swings move much less than req/s.
declare -A CPUPIDS
cpu_ticks() { # pids...: sum of utime+stime
  local t=0 p f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }; set -- $f
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}
wrk_run() { # target duration out
  local pids=${CPUPIDS[$1]:-} c0 c1
  c0=$(cpu_ticks $pids)
  wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency -H "Host: ${HOSTHDR[$1]:-127.0.0.1}" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$1]}/" >"$3" 2>&1
  c1=$(cpu_ticks $pids)
  echo "cpu_ticks $((c1 - c0)) hz $(getconf CLK_TCK)" >>"$3"
}
NGINXW=$(pgrep -P "${PIDS[3]}" | tr '\n' ' ') # nginx's workers (the master only forks them)
CPUPIDS=([rp-fasthttp]=${PIDS[1]} [nginx-plain]=$NGINXW [nginx-auth_request]="$NGINXW ${PIDS[2]}"
  [safeclose]=${PIDS[4]} [safeclose-nocache]=${PIDS[4]} [safeclose-apikeys]=${PIDS[4]} [safeclose-nocache-as]=${PIDS[4]})
for t in "${TARGETS[@]}"; do wrk_run "$t" "$WARMUP" "$RUN/logs/warmup-$t.txt"; done
# Every other round runs the targets in reverse order (A B … B A): a VM
# that speeds up or slows down through a round (one takes ~50 s) then
# favours neither end of the list, so drift cancels out of the per-round
# ratios instead of biasing the pairs whose targets are far apart in it.
for r in $(seq "$ROUNDS"); do
  ORDER=("${TARGETS[@]}")
  if (( r % 2 == 0 )); then ORDER=(); for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do ORDER+=("${TARGETS[i]}"); done; fi
  for t in "${ORDER[@]}"; do
    log "round $r/$ROUNDS: $t"
    wrk_run "$t" "$DURATION" "$RUN/wrk/$t.$r.txt"
  done
done

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1=="99%" {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {print $4}' "$1"; }
cpureq() { awk '/requests in/ {n=$1} /^cpu_ticks/ {t=$2; hz=$4} END {if (n > 0 && hz > 0) printf "%.1f\n", t*1e6/hz/n}' "$1"; } # CPU-µs per request
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Medians are computed here, in this shell: the report below runs in a
# "{ } | tee" subshell, whose assignments would not reach the SUMMARY lines.
declare -A MED CPU PAIR
for t in "${TARGETS[@]}"; do
  MED[$t]=$(for r in $(seq "$ROUNDS"); do rps "$RUN/wrk/$t.$r.txt"; done | median)
  CPU[$t]=$(for r in $(seq "$ROUNDS"); do cpureq "$RUN/wrk/$t.$r.txt"; done | median)
done
# Paired ratios: num ÷ den within each round, then the median over rounds.
# A round runs every target within a minute, so a slow phase of the VM
# that spans a round moves both sides of its ratio; the ratio of the
# medians above can pair one target's fast round with another's slow one.
# The ratios reported: num/den, then the goal.
RATIOS='safeclose-nocache/rp-fasthttp (target >= 0.85)
safeclose-nocache/nginx-auth_request (target >= 2.5)
safeclose/rp-fasthttp (cached; target >= 0.95)
safeclose-nocache-as/rp-fasthttp (AssemblyScript guest; target as nocache >= 0.85)
safeclose-nocache-as/nginx-auth_request (target as nocache >= 2.5)
safeclose-apikeys/nginx-plain (target >= 0.80)
safeclose-apikeys/rp-fasthttp
nginx-auth_request/rp-fasthttp'
PAIRS=($(cut -d' ' -f1 <<<"$RATIOS"))
for p in "${PAIRS[@]}"; do
  PAIR[$p]=$(for r in $(seq "$ROUNDS"); do
    awk -v n="$(rps "$RUN/wrk/${p%/*}.$r.txt")" -v d="$(rps "$RUN/wrk/${p#*/}.$r.txt")" 'BEGIN {if (d > 0) printf "%.4f\n", n/d}'
  done | median)
done
{
  echo "Safeclose load harness $(date -u +%FT%TZ) · cached tenant cache_ttl=$CACHE_TTL · $(nproc) cores · wrk -t$THREADS -c$CONNS -d$DURATION --latency · $ROUNDS interleaved rounds, every other one reversed"
  printf '%-20s %12s %24s %10s %8s %12s\n' target "req/s(med)" "req/s per round" "p99" non2xx "CPU-µs/req"
  for t in "${TARGETS[@]}"; do
    all=$(for r in $(seq "$ROUNDS"); do rps "$RUN/wrk/$t.$r.txt"; done | tr '\n' ' ')
    bad=$(for r in $(seq "$ROUNDS"); do non2xx "$RUN/wrk/$t.$r.txt"; done | awk '{s+=$1} END {print s+0}')
    printf '%-20s %12.0f %24s %10s %8s %12s\n' "$t" "${MED[$t]}" "$all" "$(p99 "$RUN/wrk/$t.$ROUNDS.txt")" "$bad" "${CPU[$t]}"
  done
  echo "ratio of the medians; in brackets the median of the per-round ratios"
  while read -r p goal; do
    printf '%-40s = %.3f  [%.3f]  %s\n' "$p" "$(awk -v n="${MED[${p%/*}]}" -v d="${MED[${p#*/}]}" 'BEGIN {print n/d}')" "${PAIR[$p]}" "$goal"
  done <<<"$RATIOS"
  echo "raw wrk output: $RUN/wrk"
} | tee "$RUN/results.txt"
if [[ -n ${SUMMARY:-} ]]; then
  { for t in "${TARGETS[@]}"; do printf '%s\t%s\t%s\t%s\n' "$t" "${MED[$t]}" "$(p99 "$RUN/wrk/$t.$ROUNDS.txt")" "${CPU[$t]}"; done
    for p in "${PAIRS[@]}"; do printf 'pair:%s\t%s\n' "$p" "${PAIR[$p]}"; done; } >"$SUMMARY"
fi
