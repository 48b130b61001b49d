#!/usr/bin/env bash
# Install what pendata needs to build and test on a fresh Debian machine (bookworm or later).
# Idempotent: packages already present are not fetched again. Needs root (or sudo) for apt-get.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libsqlite3-dev sqlite3 libsodium-dev libcurl4-openssl-dev libcjson-dev zlib1g-dev
      libmicrohttpd-dev libpq-dev postgresql python3
      chromium)  # chromium: the korcam page's browser test (tests/sys_korcam_web.sh)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm (tus interop and the korcam page's browser test): this machine image ships them;
# install Debian's only where there are none, so a newer preinstalled node is not shadowed.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
