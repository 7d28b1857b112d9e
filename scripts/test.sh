#!/usr/bin/env bash
# Builds gitopsd and runs the whole test suite (unit and integration tests
# against real Git servers started on loopback). Installs missing Debian
# packages first. Extra arguments go to ctest (e.g. -R reconcile).
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
ctest --test-dir build -j "$(nproc)" --output-on-failure --timeout 300 "$@"
