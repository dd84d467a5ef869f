#!/usr/bin/env bash
# Debian packages OpenKontext uses outside Python: fonts for the toy world, curl + jq for the API doc's shell
# examples (the tests run them verbatim), wrk for the HTTP benchmarks, Chromium for the playground's browser tests,
# PostgreSQL's binaries for the job store's tests (they start their own server in a temporary folder, never the
# system's). Installs only what is missing; needs root or sudo for that. (On Ubuntu, `chromium` is a snap stub: use
# Debian, or set OPENKONTEXT_CHROMIUM to a Chromium binary.)
set -euo pipefail

PACKAGES=(curl jq wrk fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf chromium postgresql)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
