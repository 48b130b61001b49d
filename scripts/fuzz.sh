#!/usr/bin/env bash
# Build the libFuzzer targets (scripts/build.sh fuzz: clang, ASan + UBSan) and run every
# fuzz/fuzz_*.c over its seed corpus fuzz/corpus/<target>/ for SECONDS each; print the executions
# and the coverage reached (cov: edges, ft: features). Exit 1 on the first crash, leak or timeout
# (the input is kept as fuzz/crash-* / leak-* / timeout-*).
#   scripts/fuzz.sh [SECONDS]           default 30 seconds per target
#   PD_FUZZ_BUILD=DIR scripts/fuzz.sh   build somewhere else than build-fuzz/
#   PD_FUZZ_ONLY=fuzz_batch scripts/fuzz.sh   one target
# New inputs the fuzzer finds go to a temporary directory, not into the committed corpus.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
secs=${1:-30}
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
dir=${PD_FUZZ_BUILD:-$top/build-fuzz}

bash scripts/build.sh fuzz "$dir" >/dev/null

status=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  [ -n "${PD_FUZZ_ONLY:-}" ] && [ "$name" != "$PD_FUZZ_ONLY" ] && continue
  bin="$dir/fuzz/$name"
  corpus="$top/fuzz/corpus/$name"
  if [ ! -x "$bin" ]; then
    echo "$name: not built ($bin missing)" >&2
    status=1
    continue
  fi
  mkdir -p "$work/$name" "$corpus"
  log="$work/$name.log"
  set +e
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$top/fuzz/" "$work/$name" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  seeds=$(find "$corpus" -type f | wc -l)
  found=$(find "$work/$name" -type f | wc -l)
  printf '%-16s %6ss  %10s execs  cov %6s  ft %6s  seeds %4s  new inputs %5s\n' \
    "$name" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$seeds" "$found"
  if [ "$rc" -ne 0 ]; then
    echo "$name: FAILED (exit $rc); the end of its log:" >&2
    tail -40 "$log" >&2
    status=1
  fi
done
exit $status
