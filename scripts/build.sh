#!/usr/bin/env bash
# Configure and build one flavour of pendata into a build directory.
#   scripts/build.sh [release|asan|fuzz] [BUILD_DIR]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-release}
case "$flavour" in
  release) dir=${2:-$top/build};      opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPENDATA_WERROR=ON) ;;
  asan)    dir=${2:-$top/build-asan}; opts=(-DCMAKE_BUILD_TYPE=Debug -DPENDATA_WERROR=ON -DPENDATA_SANITIZE=ON -DPENDATA_BENCH=OFF) ;;
  fuzz)    dir=${2:-$top/build-fuzz}; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DPENDATA_WERROR=ON -DPENDATA_FUZZ=ON -DPENDATA_SANITIZE=ON -DPENDATA_TESTS=OFF -DPENDATA_BENCH=OFF) ;;
  *) echo "usage: scripts/build.sh [release|asan|fuzz] [BUILD_DIR]" >&2; exit 2 ;;
esac
cmake -S "$top" -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
