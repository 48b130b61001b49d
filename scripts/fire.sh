#!/usr/bin/env bash
# Proof under fire, the long version (the ctest versions are the short ones): crash points,
# networks from the field (through the fault proxy, and in a network namespace with the kernel's
# own traffic shaping where the machine allows), the hostile-input catalogue, the fuzzers of the
# protocol's decoders, and the load sweep. Prints each part's figures (the lines docs/fire.md
# quotes) and exits non-zero at the first part that fails.
#   scripts/fire.sh                 everything (about 35 minutes on 2 cores)
#   scripts/fire.sh crash net       some parts: crash net netns hostile pg fuzz load
# pg: the crash, network and hostile suites (short modes) with the server on PostgreSQL
# (tests/sys_server_pg.sh; skipped there without PostgreSQL server binaries).
# Knobs: PD_FIRE_KILLS (1000), PD_FIRE_SEED (replay), PD_FIRE_FUZZ_SECONDS (120 per target),
# PD_FIRE_NET_BATCHES (6), PD_FIRE_BUILD (build/), PD_LOAD_REPEAT (see scripts/load.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
dir=${PD_FIRE_BUILD:-$top/build}
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(crash net netns hostile pg fuzz load)
for p in "${parts[@]}"; do
  case "$p" in crash | net | netns | hostile | pg | fuzz | load) ;;
    *) echo "usage: scripts/fire.sh [crash|net|netns|hostile|pg|fuzz|load ...]" >&2; exit 2 ;;
  esac
done
bash scripts/build.sh release "$dir" >/dev/null
export PD_BUILD="$dir" PD_SOURCE="$top"
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

part() { printf '\n== %s\n' "$*"; }
run() { # run TITLE COMMAND...: its FIRE/LOAD lines go to the summary
  local title=$1
  shift
  local log
  log=$(mktemp)
  local t0=$SECONDS
  if ! "$@" >"$log" 2>&1; then
    tail -60 "$log" >&2
    rm -f "$log"
    echo "fire: $title FAILED" >&2
    exit 1
  fi
  grep -E '^(FIRE|LOAD) ' "$log" | tee -a "$summary" || true
  grep -E '^   |^(ideal|link|field|kill points|hostile catalogue)' "$log" | tail -40 || true
  echo "($title: $((SECONDS - t0)) s)"
  rm -f "$log"
}

for p in "${parts[@]}"; do
  case "$p" in
  crash)
    part "crash points: ${PD_FIRE_KILLS:-1000} SIGKILLs of the device program and the server"
    PD_FIRE_KILLS=${PD_FIRE_KILLS:-1000} PD_FIRE_MAX_S=${PD_FIRE_MAX_S:-3600} \
      run crash "$dir/tests/test_fire_crash"
    ;;
  net)
    part "networks: 50 kbit/s, 600 ms, 30 % of connections cut, stalls, a server restart"
    PD_FIRE_BATCHES=${PD_FIRE_NET_BATCHES:-6} PD_FIRE_PHOTO_BYTES=30000 \
      run net "$dir/tests/test_fire_net"
    ;;
  netns)
    part "networks in a namespace of our own, shaped by the kernel (tc)"
    if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
      echo "note: needs root, ip and tc; skipped (the proxy-only run above stands)"
      continue
    fi
    ns="pdfire$$"
    if ! ip netns add "$ns" 2>/dev/null; then
      echo "note: cannot create a network namespace here; skipped"
      continue
    fi
    # lo's 64 KiB MTU would exceed any token bucket: an Ethernet-sized one, as on a real link
    ip netns exec "$ns" ip link set lo mtu 1500 up
    shaped=""
    if ip netns exec "$ns" tc qdisc add dev lo root netem delay 600ms rate 50kbit 2>/dev/null; then
      shaped=netem
      # the kernel adds the latency and the rate: the proxy only cuts and stalls
      export PD_FIRE_RATE=0 PD_FIRE_LATENCY_MS=0
    elif ip netns exec "$ns" tc qdisc add dev lo root tbf rate 100kbit burst 8kb latency 2s \
      2>/dev/null; then
      shaped=tbf
      echo "note: this kernel has no netem (sch_netem): the rate is the kernel's (tbf, 100 kbit/s"
      echo "      on lo, which every byte crosses twice: device to proxy, proxy to server: about"
      echo "      50 kbit/s end to end); latency, cuts and stalls are the proxy's"
      export PD_FIRE_RATE=0
    else
      echo "note: no usable qdisc (netem, tbf) in this kernel: the proxy shapes everything"
    fi
    echo "namespace $ns, lo shaped by: ${shaped:-nothing}"
    set +e
    (PD_FIRE_BATCHES=${PD_FIRE_NET_BATCHES:-3} PD_FIRE_PHOTO_BYTES=20000 \
      run netns ip netns exec "$ns" "$dir/tests/test_fire_net")
    rc=$?
    set -e
    unset PD_FIRE_RATE PD_FIRE_LATENCY_MS
    ip netns del "$ns"
    [ $rc = 0 ] || exit $rc
    ;;
  hostile)
    part "hostile input: the catalogue against the server and the device's importers"
    run hostile "$dir/tests/test_fire_hostile"
    ;;
  pg)
    part "on PostgreSQL: crash points, the field network and the hostile catalogue (short modes)"
    run pg bash tests/sys_server_pg.sh
    ;;
  fuzz)
    part "fuzzing: the decoders of requests, tus headers and JSON bodies (libFuzzer)"
    secs=${PD_FIRE_FUZZ_SECONDS:-120}
    for t in fuzz_auth fuzz_tus fuzz_json fuzz_batch fuzz_prelist; do
      [ -f "fuzz/$t.c" ] || continue
      PD_FUZZ_ONLY=$t PD_FUZZ_BUILD=${PD_FUZZ_BUILD:-$top/build-fuzz} bash scripts/fuzz.sh "$secs" |
        sed 's/^/FIRE fuzz /' | tee -a "$summary"
    done
    ;;
  load)
    part "load: devices syncing their day at once against one server"
    PD_LOAD_BUILD="$dir" bash scripts/load.sh
    ;;
  esac
done
part "summary"
cat "$summary"
