#!/usr/bin/env bash
# sys_tus_interop.sh — tus 1.0 interoperability, both ways, each with a connection cut once at a
# random byte K (a proxy in tests/interop/lib.mjs resets the connection):
#   1. tus-js-client (npm; its Node HTTP stack wrapped only to add pendata's Pd-Auth signature)
#      uploads a photo to pendata-server and resumes: the server acknowledges every byte exactly
#      once (its access log: the 204 PATCH bodies add up to the photo's size) after a HEAD;
#   2. pendata's client (`pendata sync --tus-upload`) uploads a file to @tus/server with
#      @tus/file-store (the reference server) and resumes at the offset the HEAD reports: the
#      stored file is byte-identical and no more than one request's worth of bytes was wasted;
#   3. the same over https (a throwaway CA made with openssl): refused without --ca-file, stored
#      byte-identical with it (the system CA store is what https uses otherwise).
# Node modules are installed into tests/interop/node_modules (npm ci, else npm install). Without
# node/npm, or when the install fails, the test FAILS with a loud message: it is never skipped
# silently. Needs PD_BUILD (the build directory); PD_SOURCE defaults to this checkout.
set -euo pipefail

B=${PD_BUILD:?set PD_BUILD to the build directory}
SRC=${PD_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
IOP=$SRC/tests/interop
T=$(mktemp -d "${TMPDIR:-/tmp}/pd-tus-interop-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "${PD_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

loud() {
    {
        echo "########################################################################"
        echo "## sys_tus_interop: NOT RUN — $*"
        echo "## The tus interoperability test needs node (>= 20.19) and npm with access"
        echo "## to the npm registry (apt-get install nodejs npm). Failing on purpose."
        echo "########################################################################"
    } >&2
    exit 1
}
fail() { echo "sys_tus_interop: FAIL: $*" >&2; exit 1; }
# Wait until FILE holds a whole first line (a server's port), or process PID has died. Up to
# 60 s: on a busy machine node, or a sanitizer build, can take seconds to start.
wait_line() {
    for _ in $(seq 1200); do
        [ "$(wc -l <"$1")" -ge 1 ] 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

command -v node >/dev/null 2>&1 || loud "node is not installed"
command -v npm >/dev/null 2>&1 || loud "npm is not installed"
if [ ! -d "$IOP/node_modules/@tus/server" ] || [ ! -d "$IOP/node_modules/tus-js-client" ]; then
    (cd "$IOP" && { npm ci --no-audit --no-fund >"$T/npm.log" 2>&1 ||
        npm install --no-audit --no-fund >>"$T/npm.log" 2>&1; }) ||
        { cat "$T/npm.log" >&2; loud "npm could not install tests/interop's packages"; }
fi

RANDOM=$(( $(date +%s) % 32768 ))
echo "sys_tus_interop: RANDOM seed $RANDOM"

# ---- 1. tus-js-client -> pendata-server ------------------------------------------------------
S=("$B/pendata-server" --db "sqlite:$T/srv.db")
"${S[@]}" init >/dev/null
"${S[@]}" user add --id E0001 --role enumerator --name "Dewi Lestari" --area 32.73.01.1001 >/dev/null
CODE=$("${S[@]}" --json enroll-code --user E0001 | python3 -c "import json,sys; print(json.load(sys.stdin)['code'])")
"${S[@]}" serve --listen 127.0.0.1:0 --access-log "$T/access.log" >"$T/port" 2>"$T/serve.err" &
SPID=$!
PIDS+=($SPID)
wait_line "$T/port" $SPID || fail "pendata-server did not start: $(cat "$T/serve.err")"
PORT=$(head -1 "$T/port")

SIZE=200000
CUT=$(( 2000 + (RANDOM * 32768 + RANDOM) % 150000 ))
echo "sys_tus_interop: tus-js-client -> pendata-server, $SIZE bytes, cut after $CUT"
OUT=$(cd "$IOP" && node tusjs_to_pendata.mjs --server "http://127.0.0.1:$PORT" --code "$CODE" \
    --size $SIZE --cut $CUT) || fail "tus-js-client upload failed"
[ "$(json "$OUT" ok)" = True ] || fail "tus-js-client: $OUT"
[ "$(json "$OUT" cuts)" = 1 ] || fail "the connection was not cut: $OUT"
# The server writes a request's access-log line once the response is sent, so the client can
# finish before the last line is written: stop the server (gracefully, finishing every request)
# before reading the log.
kill -TERM $SPID
wait $SPID || fail "pendata-server did not stop cleanly: $(cat "$T/serve.err")"
ACKED=$(awk '/method=PATCH/ && /status=204/ { for (i = 1; i <= NF; i++) if ($i ~ /^in=/) { sub("in=", "", $i); s += $i } } END { print s + 0 }' "$T/access.log")
HEADS=$(grep -c 'method=HEAD' "$T/access.log" || true)
[ "$ACKED" = "$SIZE" ] || fail "pendata-server acknowledged $ACKED bytes of $SIZE: a byte it held was sent again, or one is missing"
[ "$HEADS" -ge 1 ] || fail "tus-js-client resumed without asking the offset (HEAD)"
HASH=$(json "$OUT" hash)
BLOB=$(find "$T/srv.db.d/blobs" -name "$HASH*" -type f | head -1)
[ -n "$BLOB" ] && [ "$(stat -c %s "$BLOB")" = "$SIZE" ] ||
    fail "the server's blob store does not hold the photo $HASH"
echo "sys_tus_interop: ok: resumed after a HEAD, $ACKED bytes acknowledged once each"

# ---- 2. pendata's client -> @tus/server --------------------------------------------------------
mkdir -p "$T/tusd"
head -c 300000 /dev/urandom >"$T/file.bin"
# past the first 64 KiB request, so that the server holds bytes when the cut comes
CUT=$(( 70000 + (RANDOM * 32768 + RANDOM) % 200000 ))
echo "sys_tus_interop: pendata -> @tus/server, 300000 bytes, cut after $CUT"
(cd "$IOP" && exec node tus_server.mjs --dir "$T/tusd" --cut $CUT) >"$T/tusd.port" 2>"$T/tusd.err" &
PIDS+=($!)
wait_line "$T/tusd.port" $! || fail "@tus/server did not start: $(cat "$T/tusd.err")"
TPORT=$(json "$(head -1 "$T/tusd.port")" port) || fail "@tus/server did not start: $(cat "$T/tusd.err")"
OUT=$("$B/pendata" --json sync --tus-upload "http://127.0.0.1:$TPORT/files" "$T/file.bin" \
    --chunk 65536 --backoff 10 --state "$T/upload.state") || fail "pendata tus upload failed: $OUT"
[ "$(json "$OUT" ok)" = True ] || fail "pendata: $OUT"
URL=$(json "$OUT" url)
ID=${URL##*/}
grep -q '^cut 1 ' "$T/tusd/cuts.log" 2>/dev/null || fail "the connection to @tus/server was not cut"
cmp -s "$T/file.bin" "$T/tusd/$ID" || fail "@tus/server stored different bytes"
[ "$(json "$OUT" uploads_resumed)" -ge 1 ] || fail "pendata did not resume with HEAD: $OUT"
SENT=$(json "$OUT" upload_body_bytes)
[ "$SENT" -ge 300000 ] && [ $(( SENT - 300000 )) -le 65536 ] ||
    fail "pendata sent $SENT body bytes for 300000: more than one cut request wasted"
[ ! -e "$T/upload.state" ] || fail "the resume state file was left behind"
echo "sys_tus_interop: ok: identical file, resumed at offset $(json "$OUT" resume_offset), $(( SENT - 300000 )) bytes of the cut request lost"
# ---- 3. the same over https: our own CA given with --ca-file; without it, refused -------------
if command -v openssl >/dev/null 2>&1; then
    mkdir -p "$T/tlsd"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$T/tls.key" -out "$T/tls.pem" >/dev/null 2>&1 || fail "openssl could not make a certificate"
    (cd "$IOP" && exec node tus_server.mjs --dir "$T/tlsd" --cut 0 --cert "$T/tls.pem" \
        --key "$T/tls.key") >"$T/tlsd.port" 2>"$T/tlsd.err" &
    PIDS+=($!)
    wait_line "$T/tlsd.port" $! || fail "@tus/server (https) did not start: $(cat "$T/tlsd.err")"
    SPORT=$(json "$(head -1 "$T/tlsd.port")" port) || fail "@tus/server (https) did not start"
    if "$B/pendata" --json sync --tus-upload "https://127.0.0.1:$SPORT/files" "$T/file.bin" \
        --attempts 1 >/dev/null 2>&1; then
        fail "an https server whose certificate no CA vouches for was accepted"
    fi
    OUT=$("$B/pendata" --json sync --tus-upload "https://127.0.0.1:$SPORT/files" "$T/file.bin" \
        --ca-file "$T/tls.pem") || fail "pendata over https failed: $OUT"
    URL=$(json "$OUT" url)
    cmp -s "$T/file.bin" "$T/tlsd/${URL##*/}" || fail "@tus/server (https) stored different bytes"
    echo "sys_tus_interop: ok: https with --ca-file; an unknown certificate refused"
else
    echo "sys_tus_interop: NOTE: openssl not installed: the https part did not run" >&2
fi
echo "sys_tus_interop: PASS"
