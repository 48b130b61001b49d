#!/usr/bin/env bash
# sys_visits.sh — the field work commands end to end through the program: find (name with an
# accent, NIK, status, near, --json), household show, visit (GPS, member outcomes, warnings),
# household set, member add / set / end, household new, photo add, ops; bad input refused with
# exit code 1 and a message that names the field, usage errors with exit code 2, and nothing
# recorded by a refused command. Needs PD_BUILD (the build directory) and python3.
set -euo pipefail
PD="${PD_BUILD:?set PD_BUILD to the build directory}/pendata"
work=$(mktemp -d "${TMPDIR:-/tmp}/pd-sys-visits-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export PENDATA_PIN=246810
fail() { echo "sys_visits: FAIL: $*" >&2; exit 1; }
expect_rc() { # expect_rc CODE command...
  local want=$1; shift
  set +e; "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [ "$rc" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, expected $want"; }
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ops() { "$PD" --home dev --json ops | json 'len(d)'; }

"$PD" --home dev --quiet init --role enumerator --kdf test >/dev/null
"$PD" --home dev --quiet prelist generate --area 32.73.01 --seed 3 --households 200 -o p.pdpl \
  >/dev/null
"$PD" --home dev --quiet prelist import p.pdpl --issuer-key dev/prelist-issuer.pub >/dev/null

# find by a name word with an accent, by NIK, near a point; --json on every listing
expect_rc 0 "$PD" --home dev find --name "síti" --limit 1000 --json
n_accent=$(json 'len(d)' <out.txt)
[ "$n_accent" -gt 0 ] || fail "find síti: nothing"
expect_rc 0 "$PD" --home dev --json find --name SITI --limit 1000
[ "$(json 'len(d)' <out.txt)" = "$n_accent" ] || fail "find: case or accent changes the result"
hh=$(python3 -c "import json; print(json.load(open('out.txt'))[0]['id'])")
expect_rc 0 "$PD" --home dev household show "$hh" --json
nik=$(json '[m["nik"] for m in d["members"] if m["nik"] and not m["nik"].startswith("9999")][0]' <out.txt)
m1=$(json 'd["members"][0]["id"]' <out.txt)
lat=$(json 'd["household"]["lat"]' <out.txt)
lon=$(json 'd["household"]["lon"]' <out.txt)
expect_rc 0 "$PD" --home dev --json find --nik "$nik"
[ "$(json 'd[0]["id"]' <out.txt)" = "$hh" ] || fail "find --nik"
expect_rc 0 "$PD" --home dev --json find --near "$lat,$lon" --limit 3
[ "$(json 'd[0]["id"]' <out.txt)" = "$hh" ] || fail "find --near: the household at the point is not first"
[ "$(json 'd[0]["distance_m"] < 1' <out.txt)" = True ] || fail "find --near: distance"
expect_rc 0 "$PD" --home dev household show "$hh"
grep -q "perempuan\|laki-laki" out.txt || fail "household show: no labels for codes"

# a visit with a member outcome; a poor fix and a mock location are warnings, not refusals
before=$(ops)
expect_rc 0 "$PD" --home dev visit "$hh" --outcome found --gps "$lat,$lon,80" --mock \
  --member "$m1=confirmed" --notes "rumah biru"
visit_id=$(cat out.txt)
[[ "$visit_id" == V* ]] || fail "visit: no id printed"
grep -q "gps_accuracy" err.txt && grep -q "gps_mock" err.txt || fail "visit: warnings not shown"
[ "$(ops)" -gt "$before" ] || fail "visit: no ops"
expect_rc 0 "$PD" --home dev --json find --status found
[ "$(json 'len(d)' <out.txt)" = 1 ] || fail "find --status found"
expect_rc 0 "$PD" --home dev household show "$hh" --json
[ "$(json 'd["visits"][0]["warnings"]' <out.txt)" = "gps_accuracy,gps_mock" ] || fail "visit warnings not stored"

# refused: nothing recorded, the field named, exit 1; usage errors exit 2
before=$(ops)
expect_rc 1 "$PD" --home dev visit "$hh" --outcome found --gps 91,107
grep -q "gps.lat" err.txt || fail "bad GPS: field not named"
expect_rc 1 "$PD" --home dev visit "$hh" --outcome partying --gps "$lat,$lon"
grep -q "outcome" err.txt || fail "bad outcome: field not named"
expect_rc 1 "$PD" --home dev household set "$hh" favourite_colour blue
grep -q "household.favourite_colour: no such field" err.txt || fail "unknown field"
expect_rc 1 "$PD" --home dev household set "$hh" tenure 9
grep -q "household.tenure: 9 is not a known code" err.txt || fail "bad code"
expect_rc 1 "$PD" --home dev member set "$m1" nik 12345
grep -q "member.nik: must be 16 digits" err.txt || fail "bad NIK"
printf 'not a jpeg at all' >bad.jpg
expect_rc 1 "$PD" --home dev photo add "$hh" --kind front bad.jpg
grep -q "not a JPEG" err.txt || fail "non-JPEG photo"
[ "$(ops)" = "$before" ] || fail "a refused command recorded ops"
expect_rc 2 "$PD" --home dev visit "$hh" --gps 1,2
expect_rc 2 "$PD" --home dev household set "$hh" tenure
expect_rc 2 "$PD" --home dev member frobnicate "$m1"
expect_rc 0 "$PD" find --help
expect_rc 0 "$PD" visit --help

# corrections and members
expect_rc 0 "$PD" --home dev household set "$hh" roof_material 6
expect_rc 0 "$PD" --home dev member add "$hh" --name "Bayi Baru" --sex female \
  --birth-date 2024-10-01 --relationship 5 --reason born
baby=$(cat out.txt)
[[ "$baby" == "$hh"* ]] || fail "member add: id is not the household id + a number"
expect_rc 0 "$PD" --home dev member set "$baby" name "Bayi Putri"
expect_rc 0 "$PD" --home dev member end "$baby" --reason moved
expect_rc 0 "$PD" --home dev household show "$hh" --json
[ "$(json '[m["status"] for m in d["members"] if m["id"]=="'"$baby"'"][0]' <out.txt)" = moved ] \
  || fail "member end"
[ "$(json 'd["household"]["roof_material"]' <out.txt)" = 6 ] || fail "household set"

# a proposed household and a photo
desa=$(json 'd["household"]["desa"]' <out.txt)
expect_rc 0 "$PD" --home dev household new --desa "$desa" --head "Kepala Usulan" --sex male \
  --birth-date 1980-01-02 --gps "$lat,$lon"
new=$(cat out.txt)
[[ "$new" == N* ]] || fail "household new: id"
python3 - <<'EOF'
# a tiny valid baseline JPEG (8x8 grey): SOI, DQT, SOF0, DHT x2, SOS, one MCU, EOI
b = bytearray(b"\xff\xd8")
b += b"\xff\xdb\x00\x43\x00" + bytes([1]) * 64
b += b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00"
for cls in (0, 1):
    b += b"\xff\xc4\x00\x14" + bytes([cls << 4, 1]) + bytes(15) + b"\x00"
b += b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x3f" + b"\xff\xd9"
open("front.jpg", "wb").write(b)
EOF
expect_rc 0 "$PD" --home dev --json photo add "$new" --kind front front.jpg
hash=$(json 'd["hash"]' <out.txt)
[ "${#hash}" = 64 ] || fail "photo add: no hash"
expect_rc 1 "$PD" --home dev photo add "$new" --kind front front.jpg
grep -q "already stored" err.txt || fail "the same photo twice"

# the op log
expect_rc 0 "$PD" --home dev --json ops --pending
python3 - <<'EOF' || fail "ops: seq or clock not increasing, or kinds missing"
import json
ops = json.load(open("out.txt"))
assert all(b["seq"] == a["seq"] + 1 and b["hlc"] > a["hlc"] for a, b in zip(ops, ops[1:]))
kinds = {o["kind"] for o in ops}
assert {"visit", "set", "create", "end", "photo"} <= kinds, kinds
EOF
expect_rc 0 "$PD" --home dev ops --since 1
[ "$(wc -l <out.txt)" -ge 5 ] || fail "ops: text listing"
echo "sys_visits: ok"
