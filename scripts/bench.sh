#!/usr/bin/env bash
# Build the release flavour (scripts/build.sh release, into build/) and run every benchmark
# program it made (build/bench/bench_*), printing their figures.
#   scripts/bench.sh [NAME_FILTER]     e.g. scripts/bench.sh store  → only bench_store
#   PD_BENCH_BUILD=DIR scripts/bench.sh   build and run in DIR instead of build/
# The benchmarks write their scratch files under $TMPDIR (default /tmp); each prints its own
# figures and the comparison it is judged by.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
filter=${1:-}
dir=${PD_BENCH_BUILD:-$top/build}
bash "$top/scripts/build.sh" release "$dir" >/dev/null
shopt -s nullglob
found=0
status=0
for b in "$dir"/bench/bench_*; do
  [ -x "$b" ] && [ -f "$b" ] || continue
  name=$(basename "$b")
  [ -z "$filter" ] || [[ "$name" == *"$filter"* ]] || continue
  found=1
  echo "== $name"
  if ! "$b"; then
    echo "!! $name failed" >&2
    status=1
  fi
  echo
done
if [ "$found" = 0 ]; then
  echo "no benchmark programs found in $dir/bench" >&2
  exit 1
fi
exit $status
