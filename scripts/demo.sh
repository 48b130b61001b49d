#!/usr/bin/env bash
# THE main job, end to end, on the embedded default: a local pendata-server on SQLite, a generated
# prelist for a real kecamatan (Sukasari, Kota Bandung: 32.73.01), two enumerator devices, a
# supervisor device and a korcam device; visits with GPS, corrections, members, a new household and
# photos, offline; seal, review and approval; sync; conflicts; the korcam's resolution pulled back.
# Everything lives in demo-run/; the server is stopped at the end. Exits non-zero at the first failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
bash scripts/build.sh release >/dev/null

B="$top/build"
PD="$B/pendata"
SRV="$B/pendata-server"
run="$top/demo-run"
rm -rf "$run"
mkdir -p "$run"
cd "$run"
export PENDATA_PIN=246810   # demo only: on a real device the PIN is asked on the terminal, no echo
KEC=32.73.01
DESA1=32.73.01.1001
DESA2=32.73.01.1002

step() { printf '\n\033[1m== %s\033[0m\n' "$*" 2>/dev/null || printf '\n== %s\n' "$*"; }
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; true; }
trap cleanup EXIT

step "server: create the database and keys, load a generated prelist for kecamatan $KEC"
S=(--db "sqlite:$run/server.db")
"$SRV" "${S[@]}" init
"$SRV" "${S[@]}" load-prelist --area "$KEC" --seed 42 --households 300
"$SRV" "${S[@]}" user add --id S1 --role supervisor --name "Budi Santoso" --area "$KEC"
"$SRV" "${S[@]}" user add --id E1 --role enumerator --name "Dewi Lestari" --area "$DESA1" --supervisor S1
"$SRV" "${S[@]}" user add --id E2 --role enumerator --name "Agus Wibowo" --area "$DESA1,$DESA2" --supervisor S1
"$SRV" "${S[@]}" user add --id K1 --role korcam --name "Rina Marlina" --area "$KEC"

step "server: serve on loopback"
"$SRV" "${S[@]}" serve --listen 127.0.0.1:0 --access-log "$run/access.log" >"$run/serve.out" 2>"$run/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -qE '^[0-9]+$' "$run/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -E '^[0-9]+$' "$run/serve.out" | head -1)
[ -n "$port" ] || { cat "$run/serve.err" >&2; echo "demo: the server did not start" >&2; exit 1; }
URL="http://127.0.0.1:$port"
echo "listening on $URL"

step "devices: encrypted stores, enrolment with one-time codes (server key pinned by fingerprint)"
enroll() { # enroll HOME USER ROLE
  local out code fp
  out=$("$SRV" "${S[@]}" --json enroll-code --user "$2")
  code=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])' <<<"$out")
  fp=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])' <<<"$out")
  "$PD" --home "$1" init --role "$3" --kdf test
  "$PD" --home "$1" enroll --server "$URL" --code "$code" --fingerprint "$fp"
}
enroll e1 E1 enumerator
enroll e2 E2 enumerator
enroll s1 S1 supervisor
enroll k1 K1 korcam

step "enumerators: first sync pulls the signed prelist of their area"
"$PD" --home e1 sync
"$PD" --home e2 sync
"$PD" --home e1 find --desa "$DESA1" --limit 5

step "enumerator E1, offline: visits with GPS, corrections, a new member, a photo, a new household"
"$PD" --home e1 --json find --desa "$DESA1" --limit 12 | python3 -c '
import json, sys
for h in json.load(sys.stdin): print(h["id"], h["lat"], h["lon"])' >e1_households.txt
outcomes=(found found found_new_head found moved_within found not_found refused found found all_deceased found)
i=0
while read -r id lat lon; do
  "$PD" --home e1 visit "$id" --outcome "${outcomes[$i]}" --gps "$lat,$lon,8,712" --provider gps \
    --notes "kunjungan ke-$((i + 1))"
  i=$((i + 1))
done <e1_households.txt
first=$(sed -n 1p e1_households.txt | cut -d' ' -f1)
second=$(sed -n 2p e1_households.txt | cut -d' ' -f1)
"$PD" --home e1 household set "$first" roof_material 2
"$PD" --home e1 household set "$first" rooms 4
"$PD" --home e1 member add "$second" --name "Putri Ayu Lestari" --sex 2 --birth-date 2025-09-14 \
  --relationship 3 --reason born
python3 "$top/scripts/lib/tiny_jpeg.py" front.jpg 64 48 1
"$PD" --home e1 photo add "$first" --kind front front.jpg
"$PD" --home e1 household new --desa "$DESA1" --head "Slamet Riyadi" --address "Jl. Sukarasa Gg. Mawar No. 7"
"$PD" --home e1 ops --pending | tail -5

step "enumerator E2 visits the same household: another outcome, the same field changed differently"
lat=$(sed -n 1p e1_households.txt | cut -d' ' -f2); lon=$(sed -n 1p e1_households.txt | cut -d' ' -f3)
"$PD" --home e2 visit "$first" --outcome moved_out --gps "$lat,$lon,12" --provider gps
"$PD" --home e2 household set "$first" roof_material 5

step "seal signed batches; supervisor reviews them from batch files (SD card / Bluetooth)"
for e in e1 e2; do
  "$PD" --home $e seal
  "$PD" --home $e outbox export 1 -o "$e-b1.pdb"
  "$PD" --home s1 review import "$e-b1.pdb"
done
"$PD" --home s1 review list
"$PD" --home s1 review map 1 --svg "$run/review-map.svg"
echo "map of the first batch: $run/review-map.svg"
for n in 1 2; do "$PD" --home s1 review approve "$n"; done
"$PD" --home s1 review export 1 -o a1.pdb
"$PD" --home s1 review export 2 -o a2.pdb
"$PD" --home e1 outbox import a1.pdb || "$PD" --home e1 outbox import a2.pdb
"$PD" --home e2 outbox import a2.pdb || "$PD" --home e2 outbox import a1.pdb

step "sync: approved batches go up as one resumable tus upload; signed receipts come back"
"$PD" --home e1 sync
"$PD" --home e2 sync
"$PD" --home e1 outbox

step "server: what arrived"
"$SRV" "${S[@]}" status
step "done: everything is in $run"
