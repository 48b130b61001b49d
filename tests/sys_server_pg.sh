#!/usr/bin/env bash
# sys_server_pg.sh — the server's storage on PostgreSQL, as ctest runs it: start a throwaway
# cluster (scripts/pg.sh, fsync off), then against it
#   - test_server_pg: the storage interface call by call (the same assertions as on SQLite) plus
#     what only PostgreSQL has (version guard, partitions, revision horizon, lost updates,
#     deadlocks, NIK serialisation, reconnects);
#   - the HTTP-level suites (the list below, or $PD_PG_SUITES) through ctest with PD_TEST_DB_URL
#     set: every test server they start gets a fresh database on this cluster (tests/test_db.h)
#     and is dropped after; the fire suites in short modes (PD_FIRE_* below): crash points with at
#     least 8 SIGKILLs of the server (5 under PD_SANITIZED), each restarted on the same database
#     URL and data directory; the field network with one batch and a server restart; the hostile
#     catalogue. Their server-side checks read the PostgreSQL database (tests/fault/fire.h:
#     fire_server_db, fire_pg_integrity);
#   - bench_server_pg --quick: the real server end to end over HTTP (enrol, tus upload, commit,
#     apply, delta) on SQLite, PostgreSQL, and two server instances over one PostgreSQL;
# and stop the cluster. Skipped (exit 0, saying so) without PostgreSQL server binaries.
set -euo pipefail
build=${PD_BUILD:?PD_BUILD is the build directory}
src=${PD_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null; then
  echo "sys_server_pg: skipped (no PostgreSQL server binaries)"
  exit 0
fi
if [ ! -x "$build/tests/test_server_pg" ]; then
  echo "sys_server_pg: skipped (test_server_pg is not built)"
  exit 0
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/pd-pg-XXXXXX")
export PD_PG_FAST=1
cleanup() {
  bash "$src/scripts/pg.sh" stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
url=$(bash "$src/scripts/pg.sh" start "$dir")
echo "sys_server_pg: PostgreSQL at $url"

PD_TEST_DB_URL="$url" "$build/tests/test_server_pg"

# The HTTP-level suites, each test server on a fresh database of this cluster (tests/test_db.h),
# through ctest as CI runs them, with the fire suites in their short modes. A suite whose source
# still reads the server's SQLite file itself (or opens the server without its data directory)
# cannot run on PostgreSQL yet: it is named and skipped, not failed.
suites=${PD_PG_SUITES:-test_server test_server_sync test_server_tus test_server_apply test_server_areas test_server_cli \
  test_korcam test_sync_client test_sync_resume test_fire_crash test_fire_net test_fire_hostile}
ready=()
for name in $suites; do
  f="$src/tests/$name.c"
  [ -f "$f" ] || { echo "sys_server_pg: no $f" >&2; exit 1; }
  if grep -Eq 'sqlite3_open_v2\(|fire_open_db\(|"sqlite:%s|pd_server_open\([^,]*, [^,]*, NULL,' "$f"; then
    echo "sys_server_pg: $name skipped: it still reads the SQLite file or opens the server without its data directory"
    continue
  fi
  ready+=("$name")
done
if [ ${#ready[@]} -gt 0 ]; then
  regex="^($(IFS='|'; echo "${ready[*]}"))\$"
  echo "sys_server_pg: on PostgreSQL: ${ready[*]}"
  # server kills to reach in the crash suite (fewer under the sanitizers: every run is ~4 x
  # slower) and its time cap (about 30-120 s are needed, with the machine at rest or loaded)
  server_kills=8 max_s=240
  [ "${PD_SANITIZED:-0}" = 0 ] || server_kills=5
  # verbose into a log: on success the results and the fire suites' figures (the lines
  # docs/fire.md quotes), on failure the failed suites' output
  t0=$SECONDS
  log="$dir/suites.log"
  if ! PD_TEST_DB_URL="$url" PD_FIRE_KILLS=${PD_FIRE_KILLS:-30} PD_FIRE_MAX_S=${PD_FIRE_MAX_S:-$max_s} \
    PD_FIRE_SERVER_KILLS=${PD_FIRE_SERVER_KILLS:-$server_kills} \
    PD_FIRE_BATCHES=${PD_FIRE_BATCHES:-1} PD_FIRE_LATENCY_MS=${PD_FIRE_LATENCY_MS:-200} \
    ctest --test-dir "$build" -R "$regex" -V -j1 >"$log" 2>&1; then
    grep -E '^[0-9]+: (FIRE |kill points)' "$log" | sed -E 's/^[0-9]+: //' || true
    for n in $(grep -E 'Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)' "$log" |
      sed -E 's/.*Test +#([0-9]+):.*/\1/'); do
      grep -E "^$n: " "$log" | tail -150
    done
    grep -E 'tests passed|Test +#[0-9]+: ' "$log" || true
    echo "sys_server_pg: a suite failed on PostgreSQL (its output above)" >&2
    exit 1
  fi
  grep -E '^ *[0-9]+/[0-9]+ Test|tests passed|^[0-9]+: (FIRE |kill points|   e[0-9]: |   enumerator: |   server kills|link: |field \()' \
    "$log" | sed -E 's/^[0-9]+: //' || true
  echo "sys_server_pg: the suites on PostgreSQL took $((SECONDS - t0)) s"
fi
left=$(psql "$(echo "$url" | sed 's|/pendata?|/postgres?|')" -Atqc \
  "SELECT count(*) FROM pg_database WHERE datname LIKE 'pd_test_%'" 2>/dev/null || echo "?")
echo "sys_server_pg: test databases left behind: $left"

if [ -x "$build/bench/bench_server_pg" ]; then
  PD_BENCH_PG_URL="$url" "$build/bench/bench_server_pg" --quick
fi
echo "sys_server_pg: ok"
