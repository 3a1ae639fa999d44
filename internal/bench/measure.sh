#!/usr/bin/env bash
# One measured run for the README's performance table, shorter than
# `make bench` (each Go benchmark once or twice instead of ten times): the
# wrk load harness, then the Go benchmarks every goal row needs, then the
# table. Writes the raw output, sections headed "## <what ran>", to OUT
# (default internal/bench/results/<UTC date>-<HHMM>.txt) and prints it.
#
#   bash internal/bench/measure.sh            # about 12 minutes on 2 cores
#   OUT=/tmp/run.txt ROUNDS=3 bash internal/bench/measure.sh
#
# Run it on an otherwise idle machine: every row is a ratio to a baseline
# measured in the same run, but a neighbour's load still moves them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# One throwaway PostgreSQL cluster for the whole run (the PostgreSQL
# benchmarks need it), started before anything is measured.
if [[ -z ${SAFECLOSE_TEST_PG_DSN:-} ]]; then exec bash scripts/with-postgres.sh bash "$ROOT/internal/bench/measure.sh" "$@"; fi
ROUNDS="${ROUNDS:-9}"; DURATION="${DURATION:-6s}"  # nine rounds: runs 20-21 (README) tightened the per-round ratios
OUT="${OUT:-internal/bench/results/$(date -u +%F-%H%M).txt}"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
BENCH="$TMP/bench.txt"; LOAD="$TMP/load.tsv"
: >"$BENCH"

section() { echo "## $*"; }
gobench() { # dir args...: go test -bench, output to the run and to BENCH
  local dir=$1; shift
  section "$dir $*"
  go test -run '^$' "$@" "$dir" 2>&1 | tee -a "$BENCH"
}

{
  echo "# $(date -u '+%F %H:%M') UTC, $(nproc)-core $(systemd-detect-virt 2>/dev/null || echo machine), main at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  section "internal/bench/load.sh ROUNDS=$ROUNDS DURATION=$DURATION"
  SUMMARY="$LOAD" ROUNDS="$ROUNDS" DURATION="$DURATION" bash internal/bench/load.sh 2>/dev/null
  gobench ./proxy/ -bench 'WebhookIntake(Postgres|NoWorker)?$' -benchtime=20000x -count=2
  gobench ./proxy/ -bench 'WorkerUnknownItem$' -benchtime=20000x -benchmem -count=2
  gobench ./proxy/ -bench 'WebhookEndToEnd(Postgres)?$|WebhookDrain$' -benchtime=20000x -count=2
  gobench ./hostabi/ -bench 'Enforcement|InstanceMemory' -benchmem -count=1
  gobench ./internal/webhook/ -bench 'Verify|P256' -benchmem -count=2
  gobench ./proxy/ -bench 'Proxy$|Authenticate' -benchmem -count=2
  gobench ./store/ -bench 'Enqueue|SaveItem|LeaseNext|LeaseBacklog|DecodeEntry' -benchmem -count=1
  gobench ./store/pg/ -bench . -benchmem -count=1
  gobench ./proxy/ -bench TenantsRSS -benchtime=1x -count=1
  section "internal/bench/table"
  if [[ -s $LOAD ]]; then
    go run ./internal/bench/table -bench "$BENCH" -load "$LOAD"
  else
    go run ./internal/bench/table -bench "$BENCH"
  fi
} 2>&1 | tee "$OUT"
echo "measure: wrote $OUT" >&2
