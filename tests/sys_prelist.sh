#!/usr/bin/env bash
# sys_prelist.sh — `pendata prelist` end to end through the program: generate (the same seed gives
# the same bytes; a development issuer key is made and announced), show (verified summary, --json),
# import (refused until an issuer key is given, then pinned; twice is a no-op; another issuer is
# refused), split among enumerators (every household once, each part verifies), areas, and the exit
# codes of usage errors (2) and failures (1). Needs PD_BUILD (the build directory) and python3.
set -euo pipefail
PD="${PD_BUILD:?set PD_BUILD to the build directory}/pendata"
work=$(mktemp -d "${TMPDIR:-/tmp}/pd-sys-prelist-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export PENDATA_PIN=246810
fail() { echo "sys_prelist: FAIL: $*" >&2; exit 1; }
expect_rc() { # expect_rc CODE command...
  local want=$1; shift
  set +e; "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [ "$rc" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, expected $want"; }
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# generate: a development key is made once, and the same seed gives the same bytes
expect_rc 0 "$PD" --home dev prelist generate --area 32.73.01 --seed 5 --households 300 -o a.pdpl
grep -q "made a development issuer key" err.txt || fail "no word about the development key"
[ -f dev/prelist-issuer.key ] && [ -f dev/prelist-issuer.pub ] || fail "no development key files"
[ "$(stat -c %a dev/prelist-issuer.key)" = 600 ] || fail "the secret key file is not 0600"
expect_rc 0 "$PD" --home dev prelist generate --area 32.73.01 --seed 5 --households 300 -o b.pdpl
grep -q "signing with the development issuer key" err.txt || fail "the key was not reused"
cmp -s a.pdpl b.pdpl || fail "same seed, different bytes"
expect_rc 0 "$PD" --home dev prelist generate --area 32.73.01 --seed 6 --households 300 -o c.pdpl
cmp -s a.pdpl c.pdpl && fail "another seed, same bytes"

# show: verified summary
expect_rc 0 "$PD" --json prelist show a.pdpl --issuer-key dev/prelist-issuer.pub
[ "$(json 'd["households"]' <out.txt)" = 300 ] || fail "show: households"
[ "$(json 'sum(x["households"] for x in d["desa"])' <out.txt)" = 300 ] || fail "show: desa sum"
[ "$(json 'd["area"]' <out.txt)" = 32.73.01 ] || fail "show: area"
expect_rc 0 "$PD" prelist show a.pdpl
grep -q "not checked against a pinned key" out.txt || fail "show without a key must say so"
"$PD" --home other --quiet prelist generate --area 32.73.01.1001 --households 3 -o other.pdpl \
  >/dev/null
expect_rc 1 "$PD" prelist show a.pdpl --issuer-key other/prelist-issuer.pub
grep -q "not by the pinned issuer key" err.txt || fail "show: wrong issuer not named"
cp a.pdpl bad.pdpl
printf 'X' | dd of=bad.pdpl bs=1 seek=500 conv=notrunc status=none
expect_rc 1 "$PD" prelist show bad.pdpl --issuer-key dev/prelist-issuer.pub
grep -q "hash" err.txt || fail "a damaged payload is not reported"

# import into a device store
"$PD" --home dev --quiet init --role enumerator --kdf test >/dev/null
expect_rc 1 "$PD" --home dev prelist import a.pdpl
grep -q "pinned" err.txt || fail "import without a key: no reason given"
expect_rc 0 "$PD" --home dev --json prelist import a.pdpl --issuer-key dev/prelist-issuer.pub
[ "$(json 'd["households_added"]' <out.txt)" = 300 ] || fail "import: households added"
[ "$(json 'd["pinned"]' <out.txt)" = True ] || fail "import: key not pinned"
expect_rc 0 "$PD" --home dev prelist import a.pdpl
grep -q "already imported" out.txt || fail "second import is not a no-op"
expect_rc 1 "$PD" --home dev prelist import other.pdpl
grep -q "pinned issuer key" err.txt || fail "another issuer's package was not refused"
expect_rc 1 "$PD" --home dev prelist import a.pdpl --issuer-key other/prelist-issuer.pub
grep -q "not the key pinned" err.txt || fail "another issuer key was not refused"

# split among 4 enumerators: every household once, each part verifies
expect_rc 0 "$PD" --home dev --json prelist split a.pdpl --enumerators 4 -o parts
[ "$(json 'sum(p["households"] for p in d["parts"])' <out.txt)" = 300 ] || fail "split: sum"
[ "$(ls parts | wc -l)" = 4 ] || fail "split: not 4 files"
for f in parts/*.pdpl; do
  expect_rc 0 "$PD" --json prelist show "$f" --issuer-key dev/prelist-issuer.pub
done
expect_rc 0 "$PD" --home dev prelist split a.pdpl --enumerators 2 -o parts2
grep -q "^e01 " out.txt && grep -q "assignment" out.txt || fail "split: no assignment table"
expect_rc 1 "$PD" --home dev prelist split other.pdpl --enumerators 50 -o parts3

# areas
expect_rc 0 "$PD" prelist areas
[ "$(wc -l <out.txt)" = 38 ] || fail "areas: not 38 provinces"
expect_rc 0 "$PD" --json prelist areas 32.73.01
[ "$(json 'len(d)' <out.txt)" = 4 ] || fail "areas: Sukasari has 4 kelurahan"
expect_rc 1 "$PD" prelist areas 32.99

# usage errors exit 2, with a usage line
expect_rc 2 "$PD" prelist
expect_rc 2 "$PD" prelist frobnicate
expect_rc 2 "$PD" prelist generate --area 32.73.01
expect_rc 2 "$PD" prelist split a.pdpl -o parts
expect_rc 0 "$PD" prelist --help
grep -q "usage: pendata prelist" out.txt || fail "no help"
expect_rc 1 "$PD" --home dev prelist generate --area 32 -o x.pdpl
grep -q "kecamatan" err.txt || fail "generate: a province is refused without a reason"
echo "sys_prelist: ok"
