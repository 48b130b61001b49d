#!/usr/bin/env bash
# THE test command: install dependencies, then build and run every test twice — a release build
# with warnings as errors, and an ASan + UBSan build (LeakSanitizer on) — plus bounded fuzz runs.
#   scripts/test.sh            everything (what CI runs)
#   PD_TEST_QUICK=1 scripts/test.sh   release build only
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh

echo "== release build (-Werror) =="
bash scripts/build.sh release
(cd build && ctest --output-on-failure -j 2)

if [ -z "${PD_TEST_QUICK:-}" ]; then
  echo "== ASan + UBSan build =="
  bash scripts/build.sh asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && PD_SANITIZED=1 ctest --output-on-failure -j 2)
  if ls fuzz/fuzz_*.c >/dev/null 2>&1; then
    echo "== fuzz (bounded) =="
    bash scripts/fuzz.sh "${PD_FUZZ_SECONDS:-30}"
  fi
fi
echo "all test suites passed"
