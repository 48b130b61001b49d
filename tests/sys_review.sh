#!/usr/bin/env bash
# sys_review.sh — the supervisor's review through the `pendata` program, end to end on two
# devices: the enumerator visits and seals; the batch file goes to the supervisor, who lists it,
# reads it, maps it (a standalone SVG that an XML parser accepts) and returns it with a reason;
# the enumerator imports the decision (batch voided, its changes back in the queue), re-seals
# (batch 2 re-seals the returned one), and the supervisor approves batch 2. Also: exit codes and
# messages for a file from an unknown enumerator, a decision signed by another supervisor, a
# garbage file and usage errors. Needs PD_BUILD (the build directory) and python3.
set -euo pipefail
PD="${PD_BUILD:?set PD_BUILD to the build directory}/pendata"
work=$(mktemp -d "${TMPDIR:-/tmp}/pd-sys-review-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export PENDATA_PIN=246810
fail() { echo "sys_review: FAIL: $*" >&2; exit 1; }
expect_rc() { # expect_rc CODE command...
  local want=$1; shift
  set +e; "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [ "$rc" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, expected $want"; }
}

"$PD" --home enum --quiet init --role enumerator --kdf test >/dev/null
"$PD" --home sup --quiet init --role supervisor --kdf test >/dev/null
"$PD" --home rogue --quiet init --role supervisor --kdf test >/dev/null
"$PD" --home enum --quiet prelist generate --area 32.73.01.1001 --seed 7 --households 12 -o pkg.pdpl >/dev/null
for h in enum sup; do
  "$PD" --home $h --quiet prelist import pkg.pdpl --issuer-key enum/prelist-issuer.pub >/dev/null
done
EPK=$("$PD" --home enum outbox key)
SPK=$("$PD" --home sup review key)
RPK=$("$PD" --home rogue review key)
[ ${#EPK} = 64 ] && [ ${#SPK} = 64 ] || fail "keys are not 64 hex characters"

# a morning of visits: two households 40 s apart, one corrected
"$PD" --home enum --json find --desa 32.73.01.1001 --limit 3 | python3 -c '
import json, sys
for h in json.load(sys.stdin): print(h["id"], h["lat"], h["lon"])' >hh.txt
[ "$(wc -l <hh.txt)" = 3 ] || fail "find gave no households"
t=0
while read -r id lat lon; do
  t=$((t + 40))
  at=$(printf '2025-03-01T03:%02d:%02dZ' $((t / 60)) $((t % 60)))
  "$PD" --home enum visit "$id" --outcome found --gps "$lat,$lon,6" --at "$at" --fix-time "$at" \
    >/dev/null
done <hh.txt
first=$(head -1 hh.txt | cut -d' ' -f1)
"$PD" --home enum --quiet household set "$first" rooms 4
"$PD" --home enum --json seal >seal.json
python3 -c 'import json; d=json.load(open("seal.json")); assert d["seq"] == 1 and d["ops"] >= 7, d'
expect_rc 1 "$PD" --home enum seal
grep -q "nothing to seal" err.txt || fail "a second seal should say there is nothing to seal"
"$PD" --home enum --quiet outbox export 1 -o b1.pdb

# the supervisor only takes batches of enumerators it supervises
expect_rc 1 "$PD" --home sup review import b1.pdb
grep -q "not in this device's keyring" err.txt || fail "unknown enumerator not explained"
"$PD" --home sup --quiet review enumerator add "$EPK" --name "Siti Enumerator"
"$PD" --home sup review import b1.pdb | grep -q "1 new batches" || fail "import"
"$PD" --home sup --json review list >list.json
python3 - <<'EOF'
import json
l = json.load(open("list.json"))
assert len(l) == 1, l
b = l[0]
assert b["seq"] == 1 and b["state"] == "sealed" and b["visits"] == 3, b
assert b["outcomes"] == {"found": 3}, b
assert b["warnings"] >= 2, b  # two "too fast" pairs at least
assert b["area"] == "32.73.01.1001", b
EOF
"$PD" --home sup review show 1 >show.txt
grep -q "too_fast" show.txt || fail "show lists no too_fast warning"
grep -q "rooms" show.txt || fail "show does not show the correction"
"$PD" --home sup --json review show 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert any(o["kind"] == "visit" and o["new"]["outcome"] == "found" for o in d["ops"]), d
assert any(w["code"] == "too_fast" and w["batch_level"] for w in d["warnings"]), d'
"$PD" --home sup --quiet review map 1 --svg map.svg
python3 - <<'EOF'
import xml.etree.ElementTree as ET
root = ET.parse("map.svg").getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg", root.tag
visits = [c for c in root.iter(ns + "circle") if c.get("class") == "visit"]
assert len(visits) == 3, len(visits)
assert any(c.get("class") == "warning" for c in root.iter(ns + "circle"))
assert root.find(ns + "polygon") is not None, "no area outline"
assert any(g.get("class") == "legend" for g in root.iter(ns + "g"))
EOF

# a decision by a key that is not the enumerator's supervisor is refused
"$PD" --home rogue --quiet review enumerator add "$EPK"
"$PD" --home rogue review import b1.pdb >/dev/null
"$PD" --home rogue review approve 1 >/dev/null 2>&1
"$PD" --home rogue --quiet review export 1 -o rogue.pdb
"$PD" --home enum --quiet outbox supervisor "$SPK" --name "Pak Budi"
expect_rc 1 "$PD" --home enum outbox import rogue.pdb
grep -q "not the author's supervisor" err.txt || fail "rogue approval not refused clearly"
"$PD" --home enum --json outbox | python3 -c '
import json, sys; l = json.load(sys.stdin); assert l[0]["state"] == "sealed", l'

# the real supervisor returns it; the enumerator gets it back voided, with the reason
reason="Rumah pertama: jumlah kamar tidak sesuai, mohon cek ulang"
"$PD" --home sup review return 1 --reason "$reason" >/dev/null 2>&1
expect_rc 1 "$PD" --home sup review approve 1
grep -q "already returned" err.txt || fail "a second decision should be refused"
"$PD" --home sup --quiet review export 1 -o r1.pdb
"$PD" --home enum outbox import r1.pdb | grep -q "1 returned" || fail "outbox import"
"$PD" --home enum --json outbox >outbox.json
python3 - "$reason" <<'EOF'
import json, sys
l = json.load(open("outbox.json"))
assert l[0]["state"] == "voided" and l[0]["reason"] == sys.argv[1], l
EOF
pending=$("$PD" --home enum --json ops --pending | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$pending" -ge 7 ] || fail "the returned batch's changes are not pending again ($pending)"
"$PD" --home enum --quiet household set "$first" rooms 3
"$PD" --home enum --quiet seal >/dev/null
"$PD" --home enum --quiet outbox export 2 -o b2.pdb
"$PD" --home sup review import b2.pdb >/dev/null
"$PD" --home sup review show 2 | grep -q "re-seals a returned batch" || fail "batch 2 does not say it amends"
"$PD" --home sup review approve 2 >/dev/null 2>&1
"$PD" --home sup --quiet review export 2 -o a2.pdb
"$PD" --home enum outbox import a2.pdb | grep -q "1 approved" || fail "approval import"
"$PD" --home enum --json outbox | python3 -c '
import json, sys
l = json.load(sys.stdin)
assert [b["state"] for b in l] == ["voided", "approved"], l'

# bad input: clear errors, exit codes
printf 'not a batch file' >junk.pdb
expect_rc 1 "$PD" --home sup review import junk.pdb
grep -q "not a pendata batch file" err.txt || fail "garbage not explained"
expect_rc 2 "$PD" --home sup review return 2
expect_rc 2 "$PD" --home sup review frobnicate
expect_rc 1 "$PD" --home sup review show 99
expect_rc 1 "$PD" --home enum outbox export 7 -o x.pdb
[ ! -e x.pdb ] || fail "a failed export left a file"
echo "sys_review: ok"
