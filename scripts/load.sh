#!/usr/bin/env bash
# The load sweep: bench/bench_load.c (N simulated devices syncing their day at once against one
# pendata-server on SQLite) at several N, a table of the figures, where the knee is, and the
# national peak projected from it. Release build (scripts/build.sh release) in build/ or
# $PD_LOAD_BUILD.
#   scripts/load.sh                 N = 50 200 1000
#   scripts/load.sh 25 50 100 200   other N
#   PD_LOAD_REPEAT=3 scripts/load.sh      each N three times (the median is reported: the machine
#                                         is shared, and fsync latency varies with its load)
#   PD_LOAD_ARGS="--photos 1 --photo-bytes 100000" scripts/load.sh 50 200   a day with photos
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${PD_LOAD_BUILD:-$top/build}
repeat=${PD_LOAD_REPEAT:-1}
args=${PD_LOAD_ARGS:-}
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(50 200 1000)
for n in "${ns[@]}"; do
  case "$n" in '' | *[!0-9]*) echo "usage: scripts/load.sh [N ...]" >&2; exit 2 ;; esac
done
bash "$top/scripts/build.sh" release "$dir" >/dev/null
bin="$dir/bench/bench_load"
[ -x "$bin" ] || { echo "load: $bin was not built" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); extra args: ${args:-none}"
for n in "${ns[@]}"; do
  for r in $(seq "$repeat"); do
    # shellcheck disable=SC2086
    line=$("$bin" --devices "$n" --seed "$r" $args 2>/dev/null | grep '^LOAD ') ||
      { echo "load: bench_load --devices $n failed" >&2; exit 1; }
    echo "$line" >>"$out"
    echo "$line" >&2
  done
done

python3 - "$out" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split()[1:])
    rows.setdefault(int(kv["devices"]), []).append({k: float(v) for k, v in kv.items()})
def med(rs, k):
    return statistics.median(r[k] for r in rs)
print()
print("| devices | synced | storm (s) | batches/s | ops/s | visits/s | p50 sync (ms) | p99 sync (ms) | retries | server RSS peak (MiB) | server CPU (s) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
best = None
for n in sorted(rows):
    rs = rows[n]
    print(f"| {n} | {med(rs,'ok'):.0f} | {med(rs,'wall_s'):.2f} | {med(rs,'batches_per_s'):.1f} | "
          f"{med(rs,'ops_per_s'):.0f} | {med(rs,'visits_per_s'):.0f} | {med(rs,'p50_ms'):.0f} | "
          f"{med(rs,'p99_ms'):.0f} | {med(rs,'retries'):.0f} | {med(rs,'rss_peak_mb'):.1f} | "
          f"{med(rs,'cpu_s'):.1f} |")
    b = med(rs, "batches_per_s")
    if best is None or b > best[1]:
        best = (n, b, med(rs, "visits_per_s"), med(rs, "p99_ms"))
ns = sorted(rows)
knee = ns[0]
for a, b in zip(ns, ns[1:]):
    # past the knee, more devices add latency, not throughput
    if med(rows[b], "batches_per_s") < 1.2 * med(rows[a], "batches_per_s"):
        knee = a
        break
    knee = b
n, bps, vps, p99 = best
print()
print(f"knee: throughput stops growing at about {knee} devices syncing at once; the most seen "
      f"was {bps:.0f} batches/s ({vps:.0f} visits/s) at {n} devices, p99 {p99/1000:.1f} s.")
devices, daily = 83390, 800000
for label, window_s in (("an evening hour", 3600), ("a quarter of an hour", 900)):
    need_b = devices / window_s
    need_v = daily / window_s
    print(f"national peak, every device syncing its day within {label}: {need_b:.0f} batches/s, "
          f"{need_v:.0f} visits/s = {need_b / bps:.2f} x this one server's best "
          f"({max(1, -(-need_b // bps)):.0f} server(s) of this size for this workload).")
EOF
