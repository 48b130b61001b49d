#!/usr/bin/env bash
# sys_korcam_web.sh — the korcam's reconciliation through the real programs and a real browser:
# `pendata-server` serves; enumerators' devices (`pendata`) correct the same field differently, put
# markup in a household's name and visit one household with two outcomes; their supervisor
# approves; they sync. The korcam works the queue from a device (`pendata conflicts list | show |
# resolve`, a second decision refused) and on the web page in Debian's chromium driven by
# playwright-core (tests/web/korcam.mjs): log in, filter, open a conflict side by side with its
# history and map, resolve it, the summary per desa; the name with markup shows as text and never
# runs; a korcam of another kecamatan sees nothing, by device and by page. Then the enumerators'
# devices sync and `pendata conflicts` lists the decisions and the revisit task they received.
# Screenshots: korcam-queue.png, korcam-conflict.png, korcam-summary.png, into the test's scratch
# directory (a test run leaves the checkout as it was); PD_SHOTS=docs refreshes the ones in docs/.
#
# chromium is installed with apt-get when missing (as scripts/setup.sh does), playwright-core into
# tests/web/node_modules (npm ci, else npm install). Without them the test FAILS loudly: it is
# never skipped. Needs PD_BUILD (the build directory), python3; PD_SOURCE defaults to this checkout.
set -euo pipefail

B=${PD_BUILD:?set PD_BUILD to the build directory}
SRC=${PD_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
WEB=$SRC/tests/web
PD="$B/pendata"
T=$(mktemp -d "${TMPDIR:-/tmp}/pd-korcam-web-XXXXXX")
SHOTS=${PD_SHOTS:-$T}
case "$SHOTS" in /*) ;; *) SHOTS=$SRC/$SHOTS ;; esac
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "${PD_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

loud() {
    {
        echo "########################################################################"
        echo "## sys_korcam_web: NOT RUN — $*"
        echo "## The korcam page's browser test needs Debian's chromium (apt-get install"
        echo "## chromium), node and npm with access to the npm registry. Failing on purpose."
        echo "########################################################################"
    } >&2
    exit 1
}
fail() { echo "sys_korcam_web: FAIL: $*" >&2; exit 1; }
say() { echo "sys_korcam_web: $*" >&2; }
expect_rc() { # expect_rc CODE command...
    local want=$1; shift
    set +e; "$@" >"$T/out.txt" 2>"$T/err.txt"; local rc=$?; set -e
    [ "$rc" = "$want" ] || { cat "$T/out.txt" "$T/err.txt" >&2; fail "'$*' exited $rc, expected $want"; }
}
py() { python3 -c "$@"; }

# ---- what the test needs ---------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
    command -v apt-get >/dev/null 2>&1 || loud "chromium is missing and there is no apt-get"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    say "installing chromium (apt-get)"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends chromium; } >"$T/apt.log" 2>&1 ||
        { cat "$T/apt.log" >&2; loud "apt-get could not install chromium"; }
fi
[ -x /usr/bin/chromium ] || loud "/usr/bin/chromium is not there"
command -v node >/dev/null 2>&1 || loud "node is not installed"
command -v npm >/dev/null 2>&1 || loud "npm is not installed"
if [ ! -d "$WEB/node_modules/playwright-core" ]; then
    (cd "$WEB" && { npm ci --no-audit --no-fund >"$T/npm.log" 2>&1 ||
        npm install --no-audit --no-fund >>"$T/npm.log" 2>&1; }) ||
        { cat "$T/npm.log" >&2; loud "npm could not install playwright-core into tests/web"; }
fi

# ---- the server ------------------------------------------------------------------------------
K1P="kecamatan-satu-rahasia"
K2P="kecamatan-dua-rahasia"
S=("$B/pendata-server" --db "sqlite:$T/srv.db")
"${S[@]}" init >/dev/null
"${S[@]}" user add --id S0001 --role supervisor --name "Budi Santoso" --area 32.73.01 >/dev/null
"${S[@]}" user add --id E0001 --role enumerator --name "Dewi Lestari" --area 32.73.01.1001 \
    --supervisor S0001 >/dev/null
"${S[@]}" user add --id E0002 --role enumerator --name "Agus Salim" --area 32.73.01.1001 \
    --supervisor S0001 >/dev/null
"${S[@]}" user add --id K0001 --role korcam --name "Hendra Gunawan" --area 32.73.01 >/dev/null
"${S[@]}" user add --id K0002 --role korcam --name "Yuli Astuti" --area 32.73.02 >/dev/null
"${S[@]}" load-prelist --area 32.73.01.1001 --seed 7 --households 12 >/dev/null
"${S[@]}" load-prelist --area 32.73.01.1002 --seed 3 --households 4 >/dev/null
printf '%s\n' "$K1P" >"$T/k1.pw"
"${S[@]}" user passwd --id K0001 --password-file "$T/k1.pw" >/dev/null
printf '%s\n' "$K2P" | "${S[@]}" user passwd --id K0002 >/dev/null
expect_rc 1 "${S[@]}" user passwd --id E0001 --password-file "$T/k1.pw"
grep -q "only a korcam" "$T/err.txt" || fail "a web password for an enumerator is not refused"
"${S[@]}" serve --listen 127.0.0.1:0 --access-log "$T/access.log" >"$T/port" 2>"$T/serve.err" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
PORT=$(head -1 "$T/port")
[ -n "$PORT" ] || fail "pendata-server did not start: $(cat "$T/serve.err")"
URL="http://127.0.0.1:$PORT"

# ---- devices ---------------------------------------------------------------------------------
export PENDATA_PIN=246810
enrol() { # enrol HOME USER ROLE
    "$PD" --home "$T/$1" --quiet init --role "$3" --kdf test >/dev/null
    local j
    j=$("${S[@]}" --json enroll-code --user "$2")
    "$PD" --home "$T/$1" --quiet enroll --server "$URL" \
        --code "$(py 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$j")" \
        --fingerprint "$(py 'import json,sys; print(json.loads(sys.argv[1])["fingerprint"])' "$j")" \
        >/dev/null
}
sync() { "$PD" --home "$T/$1" --quiet sync >/dev/null 2>"$T/sync.err" || { cat "$T/sync.err" >&2; fail "sync of $1"; }; }
enrol enu1 E0001 enumerator
enrol enu2 E0002 enumerator
enrol sup S0001 supervisor
enrol kor K0001 korcam
enrol kor2 K0002 korcam
for d in enu1 enu2 sup enu1 enu2; do sync $d; done

# seal, have the supervisor approve through batch files, sync
submit() { # submit HOME
    local seq n
    seq=$("$PD" --home "$T/$1" --json seal | py 'import json,sys; print(json.load(sys.stdin)["seq"])')
    "$PD" --home "$T/$1" --quiet outbox export "$seq" -o "$T/b.pdb"
    "$PD" --home "$T/sup" review import "$T/b.pdb" >/dev/null
    n=$("$PD" --home "$T/sup" --json review list | py 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    "$PD" --home "$T/sup" review approve "$n" >/dev/null 2>&1
    "$PD" --home "$T/sup" --quiet review export "$n" -o "$T/a.pdb"
    "$PD" --home "$T/$1" outbox import "$T/a.pdb" >/dev/null
    sync "$1"
}

# ---- field work that does not fit -------------------------------------------------------------
ROOF=3273011001000003
XSSH=3273011001000005
TWICE=3273011001000008
now=$("$PD" --home "$T/enu1" --json household show $ROOF |
    py 'import json,sys; print(json.load(sys.stdin)["household"]["roof_material"])')
a=$([ "$now" = 2 ] && echo 3 || echo 2)
b=$([ "$now" = 4 ] && echo 5 || echo 4)
"$PD" --home "$T/enu1" --quiet household set $ROOF roof_material "$a"
"$PD" --home "$T/enu2" --quiet household set $ROOF roof_material "$b"
XSS='<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
"$PD" --home "$T/enu1" --quiet household set $XSSH head_name "$XSS"
"$PD" --home "$T/enu2" --quiet household set $XSSH head_name "Ujang Sutisna"
# a morning of visits (a few metres off each household's recorded place), the roof household by
# both enumerators (the same outcome: no conflict, two fixes on its map), household 8 by both with
# different outcomes (a double visit)
at() { # at HOUSEHOLD DLAT DLON ACCURACY -> "lat,lon,acc"
    "$PD" --home "$T/enu1" --json household show "$1" | py '
import json, sys
h = json.load(sys.stdin)["household"]
print("%.6f,%.6f,%s" % (h["lat"] + float(sys.argv[1]), h["lon"] + float(sys.argv[2]), sys.argv[3]))' "$2" "$3" "$4"
}
for n in 01 02 04 06; do
    "$PD" --home "$T/enu1" --quiet visit 32730110010000$n --outcome found \
        --gps "$(at 32730110010000$n 0.00004 -0.00003 7)" >/dev/null
done
"$PD" --home "$T/enu1" --quiet visit $ROOF --outcome found --gps "$(at $ROOF 0.00006 -0.00004 6)" >/dev/null
"$PD" --home "$T/enu2" --quiet visit $ROOF --outcome found --gps "$(at $ROOF -0.00005 0.00007 18)" >/dev/null
for n in 09 10; do
    "$PD" --home "$T/enu2" --quiet visit 32730110010000$n --outcome found \
        --gps "$(at 32730110010000$n -0.00003 0.00002 9)" >/dev/null
done
"$PD" --home "$T/enu1" --quiet visit $TWICE --outcome found --gps "$(at $TWICE 0.00003 0.00001 8)" >/dev/null
"$PD" --home "$T/enu2" --quiet visit $TWICE --outcome not_found --gps "$(at $TWICE -0.0002 0.00015 25)" >/dev/null
# one NIK in two households: a member of household 6 gets the NIK of a member of household 7
# of the same sex (a NIK says the sex)
"$PD" --home "$T/enu1" --json household show 3273011001000006 >"$T/h6.json"
"$PD" --home "$T/enu1" --json household show 3273011001000007 >"$T/h7.json"
read -r DUPM DUPNIK < <(py '
import json, sys
a = json.load(open(sys.argv[1]))["members"]
b = json.load(open(sys.argv[2]))["members"]
for m in a:
    for o in b:
        if m["sex"] == o["sex"] and o["nik"] and m["nik"] != o["nik"]:
            print(m["id"], o["nik"]); sys.exit(0)
sys.exit("no pair of members of the same sex")' "$T/h6.json" "$T/h7.json")
"$PD" --home "$T/enu1" --quiet member set "$DUPM" nik "$DUPNIK" 2>/dev/null
submit enu1
submit enu2

# ---- the korcam's device -----------------------------------------------------------------------
"$PD" --home "$T/kor" --json conflicts list >"$T/list.json"
read -r ROOF_ID XSS_ID TWICE_ID < <(py '
import json, sys
l = json.load(open(sys.argv[1]))["conflicts"]
def one(kind, target, field=None):
    m = [c for c in l if c["kind"] == kind and c["target"] == target and (field is None or c["field"] == field)]
    assert len(m) == 1, (kind, target, l)
    return m[0]["id"]
one("duplicate_nik", sys.argv[5])
print(one("field", sys.argv[2], "roof_material"), one("field", sys.argv[3], "head_name"),
      one("double_visit", sys.argv[4]))' "$T/list.json" $ROOF $XSSH $TWICE "$DUPM")
"$PD" --home "$T/kor" conflicts list >"$T/list.txt"
grep -q "roof_material" "$T/list.txt" || fail "the list does not show the roof conflict"
"$PD" --home "$T/kor" conflicts list --kind double_visit --json |
    py 'import json,sys; d=json.load(sys.stdin); assert d["total"] == 1, d'
"$PD" --home "$T/kor" conflicts show "$TWICE_ID" >"$T/show.txt"
grep -q "found" "$T/show.txt" && grep -q "not_found" "$T/show.txt" || fail "show lacks both outcomes"
grep -q "GPS points" "$T/show.txt" || fail "show lacks the GPS points"
"$PD" --home "$T/kor" conflicts resolve "$TWICE_ID" --revisit --note "Tanya tetangga juga" >/dev/null
expect_rc 1 "$PD" --home "$T/kor" conflicts resolve "$TWICE_ID" --take server
grep -q "already_resolved" "$T/err.txt" || fail "a second decision is not refused with 409"
expect_rc 2 "$PD" --home "$T/kor" conflicts resolve "$ROOF_ID" --take server --revisit
"$PD" --home "$T/kor" conflicts summary >"$T/summary.txt"
grep -q "32.73.01.1002" "$T/summary.txt" || fail "the summary lacks the second desa"
# the other kecamatan's korcam: nothing to list, nothing to show or decide
"$PD" --home "$T/kor2" --json conflicts list --state all |
    py 'import json,sys; d=json.load(sys.stdin); assert d["total"] == 0 and not d["conflicts"], d'
expect_rc 1 "$PD" --home "$T/kor2" conflicts show "$ROOF_ID"
grep -q "404" "$T/err.txt" || fail "another kecamatan's show is not a 404"
expect_rc 1 "$PD" --home "$T/kor2" conflicts resolve "$ROOF_ID" --take server
# an enumerator's device cannot work the queue
expect_rc 1 "$PD" --home "$T/enu1" conflicts resolve "$ROOF_ID" --take server
grep -q "korcam" "$T/err.txt" || fail "an enumerator's resolve is not refused clearly"

# ---- the page, in chromium -------------------------------------------------------------------
mkdir -p "$SHOTS"
say "chromium $(/usr/bin/chromium --version 2>/dev/null | head -1)"
KORCAM_URL="$URL/korcam/" K1=K0001 K1_PASSWORD="$K1P" K2=K0002 K2_PASSWORD="$K2P" \
FIELD_HH=$ROOF XSS_TEXT="$XSS" OPEN_ID="$XSS_ID" SHOTS="$SHOTS" PROFILE="$T/profile" \
    node "$WEB/korcam.mjs" >"$T/web.json" 2>"$T/web.err" ||
    { cat "$T/web.json" "$T/web.err" >&2; fail "the browser run failed"; }
py 'import json,sys; d=json.load(open(sys.argv[1])); print("\n".join("  ok: " + s for s in d["steps"]))' \
    "$T/web.json" >&2
for f in korcam-queue korcam-conflict korcam-summary; do
    [ -s "$SHOTS/$f.png" ] || fail "no screenshot $f.png"
done

# ---- the devices pull the decisions -------------------------------------------------------------
sync enu1
sync enu2
"$PD" --home "$T/enu1" --json household show $ROOF |
    py 'import json,sys; h=json.load(sys.stdin)["household"]; assert h["roof_material"] == int(sys.argv[1]), h' "$b"
"$PD" --home "$T/enu1" --json conflicts >"$T/enu1.json"
py '
import json, sys
d = json.load(open(sys.argv[1]))
c = {x["id"]: x for x in d["conflicts"]}
r = c[int(sys.argv[2])]
assert r["state"] == "resolved" and r["resolution"] == "device" and r["resolved_by"] == "K0001", r
assert "tile" in r["note"], r
assert c[int(sys.argv[3])]["state"] == "open", c
' "$T/enu1.json" "$ROOF_ID" "$XSS_ID"
"$PD" --home "$T/enu1" conflicts >"$T/enu1.txt"
grep -q "device -> $b by K0001" "$T/enu1.txt" || { cat "$T/enu1.txt" >&2; fail "enu1 does not list the decision"; }
"$PD" --home "$T/enu2" --json conflicts tasks >"$T/tasks.json"
py '
import json, sys
t = json.load(open(sys.argv[1]))["tasks"]
assert len(t) == 1 and t[0]["household_id"] == sys.argv[2] and t[0]["conflict_id"] == int(sys.argv[3]), t
assert t[0]["note"] == "Tanya tetangga juga" and t[0]["created_by"] == "K0001" and not t[0]["done"], t
' "$T/tasks.json" $TWICE "$TWICE_ID"
"$PD" --home "$T/enu1" --json conflicts tasks | py 'import json,sys; assert json.load(sys.stdin)["tasks"] == []'
grep -q "korcam" "$T/access.log" || fail "the access log shows no page request"
if grep -q "pd_korcam=" "$T/access.log"; then fail "the access log holds a session token"; fi
# the server stops cleanly (and, in a sanitizer build, without a report)
kill "${PIDS[0]}"
wait "${PIDS[0]}" || fail "pendata-server did not stop cleanly: $(cat "$T/serve.err")"
PIDS=()
if grep -qE "Sanitizer|runtime error" "$T/serve.err"; then cat "$T/serve.err" >&2; fail "the server's sanitizer report"; fi
echo "sys_korcam_web: ok"
