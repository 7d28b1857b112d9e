#!/usr/bin/env bash
# Installs what gitopsd needs to build, and what its tests start (git's
# http-backend behind lighttpd, sshd, PostgreSQL), from Debian 12 packages.
# Idempotent: it does nothing when everything is already installed.
#   packaging/install-deps.sh          build + test dependencies
#   packaging/install-deps.sh --build  build dependencies only
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  libgit2-dev libsimdjson-dev libpoco-dev libspdlog-dev libsqlite3-dev libcli11-dev
)
test_packages=(
  libgtest-dev libgmock-dev json-schema-test-suite python3-jsonschema
  lighttpd lighttpd-mod-openssl apache2-utils openssh-server openssh-client openssl
  postgresql
  dpkg-dev curl man-db systemd adduser procps
)

packages=("${build_packages[@]}")
[ "${1:-}" = "--build" ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
