#!/usr/bin/env bash
# sys_server_pg.sh — the server's storage on PostgreSQL, as ctest runs it: start a throwaway
# cluster (scripts/pg.sh, fsync off), then against it
#   - test_server_pg: the storage interface call by call (the same assertions as on SQLite) plus
#     what only PostgreSQL has (version guard, partitions, revision horizon, lost updates,
#     deadlocks, NIK serialisation, reconnects);
#   - every other tests/test_*.c whose fixture honours PD_TEST_DB_URL (it, or the shared
#     test_server_client.h it includes, reads that variable): the same tests, on PostgreSQL;
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

ran=0
for f in "$src"/tests/test_*.c; do
  name=$(basename "$f" .c)
  [ "$name" = test_server_pg ] && continue
  [ -x "$build/tests/$name" ] || continue
  honours=0
  grep -q PD_TEST_DB_URL "$f" && honours=1
  if grep -q '"test_server_client.h"' "$f" && grep -q PD_TEST_DB_URL "$src/tests/test_server_client.h"; then
    honours=1
  fi
  [ $honours = 1 ] || continue
  echo "sys_server_pg: $name on PostgreSQL"
  PD_TEST_DB_URL="$url" "$build/tests/$name"
  ran=$((ran + 1))
done
echo "sys_server_pg: $ran server test program(s) besides test_server_pg honour PD_TEST_DB_URL"

if [ -x "$build/bench/bench_server_pg" ]; then
  PD_BENCH_PG_URL="$url" "$build/bench/bench_server_pg" --quick
fi
echo "sys_server_pg: ok"
