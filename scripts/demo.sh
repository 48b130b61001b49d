#!/usr/bin/env bash
# THE main job, end to end, on the embedded default: a local server on SQLite, a generated prelist,
# enumerator and supervisor devices, visits, review, sync and conflicts — all under demo-run/.
# Everything it does is printed as it goes; it exits non-zero at the first failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
bash scripts/build.sh release >/dev/null

PD="$top/build/pendata"
run="$top/demo-run"
rm -rf "$run"
mkdir -p "$run"
export PENDATA_PIN=246810   # demo only: a real device asks for the PIN on the terminal

step() { printf '\n== %s\n' "$*"; }

step "enumerator device: create the encrypted store"
"$PD" --home "$run/enum1" init --role enumerator --kdf test
step "done"
