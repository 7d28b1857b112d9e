#!/usr/bin/env bash
# Checks the systemd unit without installing anything and without systemd
# running as PID 1:
#  - `systemd-analyze verify` must print nothing. It wants the unit's
#    programs and man pages to exist, so it runs against a scratch root: a
#    copy of this machine's unit folder (for the targets the unit names), the
#    unit, stand-ins for the programs it runs, and MANPATH pointing at
#    packaging/man for its Documentation=man: links.
#  - `systemd-analyze security --offline=true` must rate the unit's exposure
#    3.0 or lower ("OK" or better).
# Prints both results and exits 1 if either fails.
#   packaging/check-unit.sh [UNIT_FILE]     (default systemd/gitopsd.service)
set -euo pipefail
cd "$(dirname "$0")/.."
unit_file=$(realpath "${1:-systemd/gitopsd.service}")
unit=$(basename "$unit_file")
max_exposure=3.0

command -v systemd-analyze >/dev/null || { echo "check-unit: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }
command -v man >/dev/null || { echo "check-unit: man is missing (apt-get install man-db)" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

root=$scratch/root
mkdir -p "$root/lib/systemd" "$root/etc/systemd/system"
cp -a /lib/systemd/system "$root/lib/systemd/"
cp "$unit_file" "$root/lib/systemd/system/$unit"
# Stand-ins for every absolute program the unit runs (ExecStart=, ...).
sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$unit_file" | sort -u |
  while read -r program; do
    mkdir -p "$root$(dirname "$program")"
    printf '#!/bin/sh\nexit 0\n' >"$root$program"
    chmod 755 "$root$program"
  done
# man -w finds packaging/man/man1/gitopsd.1 and so on.
mkdir -p "$scratch/man"
for page in packaging/man/*.[0-9]; do
  section=${page##*.}
  mkdir -p "$scratch/man/man$section"
  cp "$page" "$scratch/man/man$section/"
done

status=0
echo "== systemd-analyze verify $unit"
verify_out=$(MANPATH="$scratch/man" systemd-analyze verify --root="$root" "$unit" 2>&1) || status=1
if [ -n "$verify_out" ]; then
  printf '%s\n' "$verify_out"
  status=1
fi
[ "$status" -eq 0 ] && echo "clean"

echo "== systemd-analyze security --offline=true $unit"
security_out=$(systemd-analyze security --offline=true "$unit_file" 2>&1) || true
printf '%s\n' "$security_out" | grep '✗' || true
score_line=$(printf '%s\n' "$security_out" | grep 'Overall exposure level' || true)
echo "${score_line:-no exposure score printed}"
score=$(printf '%s\n' "$score_line" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
if [ -z "$score" ] || awk -v s="$score" -v max="$max_exposure" 'BEGIN { exit !(s > max) }'; then
  echo "check-unit: exposure ${score:-unknown} is above $max_exposure" >&2
  status=1
fi

[ "$status" -eq 0 ] && echo "check-unit: ok" || echo "check-unit: FAILED" >&2
exit "$status"
