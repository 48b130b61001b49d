#!/usr/bin/env bash
# pg.sh — a throwaway PostgreSQL for tests and benchmarks (the server's production backend).
#
#   scripts/pg.sh start DIR    initdb in DIR/data (if new), start it listening on a unix socket in
#                              DIR only (no TCP unless PD_PG_PORT is set), create database
#                              "pendata", and print its URL on stdout, e.g.
#                                postgresql:///pendata?host=/tmp/x&port=5432&user=postgres
#   scripts/pg.sh url DIR      print that URL again
#   scripts/pg.sh stop DIR     stop it (fast shutdown); DIR is left for the caller to remove
#
# Environment:
#   PD_PG_BIN    the PostgreSQL binaries (default: the newest /usr/lib/postgresql/*/bin, or PATH)
#   PD_PG_PORT   also listen on 127.0.0.1:PORT (default: socket only; the socket name uses 5432)
#   PD_PG_FAST=1 fsync off (tests: a crash of a throwaway cluster loses nothing that matters);
#                the default keeps PostgreSQL durable, as benchmarks must be to be fair.
#
# initdb and postgres refuse to run as root: as root (CI) the cluster is owned by and run as the
# `postgres` system user (runuser), DIR is chowned to it, and the URL names user postgres. A
# non-root developer runs everything as themselves. Authentication is `trust` on the socket only
# (the socket sits in DIR, mode 0700 — only its owner and root can reach it); with PD_PG_PORT,
# also on loopback TCP (127.0.0.1, ::1).
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: pg.sh start|stop|url DIR"
cmd=$1
dir=$2
[ -n "$dir" ] || die "no directory"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"
port=${PD_PG_PORT:-5432}

bin=${PD_PG_BIN:-}
if [ -z "$bin" ]; then
  for b in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do bin=$b; break; done
fi
if [ -z "$bin" ]; then
  bin=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")
fi
[ -x "$bin/pg_ctl" ] || die "no PostgreSQL server binaries found (install postgresql, or set PD_PG_BIN)"

if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  id "$owner" >/dev/null 2>&1 || die "running as root but there is no 'postgres' system user"
  as_owner() { runuser -u "$owner" -- "$@"; }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi

url() {
  printf 'postgresql:///pendata?host=%s&port=%s&user=%s\n' "$dir" "$port" "$owner"
}

case "$cmd" in
start)
  if [ "$owner" != "$(id -un)" ]; then
    chown "$owner" "$dir"
  fi
  chmod 0700 "$dir"
  if [ ! -s "$data/PG_VERSION" ]; then
    # host lines of initdb's pg_hba.conf are loopback only: trust them only when asked to listen
    auth_host=reject
    [ -n "${PD_PG_PORT:-}" ] && auth_host=trust
    as_owner "$bin/initdb" -D "$data" -U "$owner" --auth-local=trust --auth-host=$auth_host \
      --encoding=UTF8 --locale=C -N >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    listen=""
    [ -n "${PD_PG_PORT:-}" ] && listen="127.0.0.1"
    {
      echo "# pendata throwaway cluster (scripts/pg.sh)"
      echo "listen_addresses = '$listen'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir'"
      echo "max_connections = 100"
      # A transaction over partitioned tables locks every partition (and its indexes) it plans
      # against; the default 64 per connection is too few for 39 province partitions.
      echo "max_locks_per_transaction = 512"
      echo "shared_buffers = 128MB"
      echo "deadlock_timeout = 200ms"
      echo "log_min_messages = warning"
      echo "logging_collector = off"
      if [ -n "${PD_PG_FAST:-}" ]; then
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
      fi
    } >>"$data/postgresql.conf"
  fi
  if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -n 30 "$dir/server.log" >&2 || true; die "pg_ctl start failed"; }
  fi
  if ! as_owner "$bin/psql" -h "$dir" -p "$port" -U "$owner" -d postgres -Atqc \
      "SELECT 1 FROM pg_database WHERE datname = 'pendata'" | grep -q 1; then
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U "$owner" pendata
  fi
  url
  ;;
url)
  url
  ;;
stop)
  if [ -s "$data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
  fi
  ;;
*)
  die "unknown command '$cmd' (start, stop, url)"
  ;;
esac
