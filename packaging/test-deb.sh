#!/usr/bin/env bash
# Builds the Debian package from an existing build folder and takes it
# through its life with dpkg: install an older version, run the installed
# daemon, upgrade (a locally changed conffile survives), remove, purge.
#   packaging/test-deb.sh [BUILD_DIR]        (default: build, as scripts/test.sh makes it)
# Runs dpkg as root (through sudo when not root). The packages are built in
# a scratch folder; the build folder is only brought up to date.
#
# Not tested here, for want of systemd as PID 1: systemctl start/stop/reload
# of gitopsd.service, READY=1 and the watchdog, the sandbox at run time
# (ProtectSystem=, SystemCallFilter=, ...), KillMode=process keeping the
# deployed services across a restart, and the maintainer scripts' systemctl
# steps (restart on upgrade, stop and kill on removal). The unit file itself
# is checked statically by packaging/check-unit.sh, and here once installed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=$(realpath "${1:-build}")

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
scratch=$(mktemp -d)
daemon_pid=""
user_existed=no
getent passwd gitopsd >/dev/null && user_existed=yes

step() { echo "== $*"; }
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }
check() { local what=$1; shift; "$@" || fail "$what"; }

is_installed() { # any state dpkg still knows: installed, or config files left
  dpkg-query -W -f='${db:Status-Status}' gitopsd 2>/dev/null | grep -qv '^not-installed$'
}

cleanup() {
  local rc=$?
  if [ -n "$daemon_pid" ] && $SUDO kill -0 "$daemon_pid" 2>/dev/null; then
    $SUDO kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if is_installed; then $SUDO dpkg -P gitopsd >/dev/null 2>&1 || true; fi
  # The package keeps its system user on purge (see postrm); the test puts
  # the machine back as it found it.
  if [ "$user_existed" = no ] && getent passwd gitopsd >/dev/null; then
    $SUDO userdel gitopsd 2>/dev/null || true
    getent group gitopsd >/dev/null && { $SUDO groupdel gitopsd 2>/dev/null || true; }
  fi
  $SUDO rm -rf "$scratch"
  [ "$rc" -eq 0 ] && echo "test-deb: ok" || echo "test-deb: see the output above" >&2
}
trap cleanup EXIT

# A gitopsd a previous run of this test left behind (it marks its state
# folder) is purged; any other installation is not ours to touch.
if is_installed; then
  [ -e /var/lib/gitopsd/.installed-by-test-deb ] ||
    fail "gitopsd is installed on this machine; purge it first (dpkg -P gitopsd)"
  $SUDO dpkg -P gitopsd >/dev/null
fi

step "build (brought up to date) and package"
[ -f "$build/CMakeCache.txt" ] ||
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target gitopsd gitopsctl gitopsd_man >/dev/null
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
old_version=0.0.9
cpack --config "$build/CPackConfig.cmake" -B "$scratch/new" >/dev/null
cpack --config "$build/CPackConfig.cmake" -B "$scratch/old" -D CPACK_PACKAGE_VERSION=$old_version >/dev/null
new_deb=$scratch/new/gitopsd_${version}_amd64.deb
old_deb=$scratch/old/gitopsd_${old_version}_amd64.deb
check "cpack wrote $new_deb" test -f "$new_deb"
check "cpack wrote $old_deb" test -f "$old_deb"
echo "Depends: $(dpkg-deb -f "$new_deb" Depends)"

# The older package gets an older default configuration (no "$schema"
# line), so the upgrade meets a conffile changed on both sides: the case
# where dpkg would ask, and --force-confold keeps the admin's version.
step "older package: $old_version with an older default configuration"
unpacked=$scratch/old/tree
dpkg-deb -R "$old_deb" "$unpacked"
sed -i '/"\$schema"/d' "$unpacked/etc/gitopsd/gitopsd.json"
(cd "$unpacked" && find etc lib usr -type f -exec md5sum {} + >DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$unpacked" "$old_deb" >/dev/null

# Man pages may be excluded from installation (Docker images configure dpkg
# so); then the test looks for them in the package instead.
man_excluded=no
if grep -qs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then man_excluded=yes; fi

installed_files=(
  /usr/bin/gitopsd /usr/bin/gitopsctl /lib/systemd/system/gitopsd.service
  /usr/lib/sysusers.d/gitopsd.conf /usr/lib/tmpfiles.d/gitopsd.conf /etc/gitopsd/gitopsd.json
  /usr/share/gitopsd/schemas/config.schema.json /usr/share/gitopsd/schemas/template.schema.json
)
man_pages=(/usr/share/man/man1/gitopsd.1.gz /usr/share/man/man1/gitopsctl.1.gz
           /usr/share/man/man5/gitopsd.json.5.gz)

step "install $old_version"
$SUDO dpkg -i "$old_deb" >/dev/null
$SUDO touch /var/lib/gitopsd/.installed-by-test-deb
check "version $old_version installed" \
  test "$(dpkg-query -W -f='${Version}' gitopsd)" = "$old_version"
for f in "${installed_files[@]}"; do check "$f installed" test -f "$f"; done
check "the schemas installed are the repository's" diff -r -x CMakeLists.txt "$src/schemas" /usr/share/gitopsd/schemas
if [ "$man_excluded" = no ]; then
  for f in "${man_pages[@]}"; do check "$f installed" test -f "$f"; done
  check "man finds gitopsd(1)" test "$(man -w gitopsd)" = /usr/share/man/man1/gitopsd.1.gz
  for f in "${man_pages[@]}"; do
    warnings=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
    check "$f renders without warnings: $warnings" test -z "$warnings"
  done
else
  for f in "${man_pages[@]}"; do
    check "$f in the package" bash -c "dpkg-deb -c '$old_deb' | grep -q '.$f\$'"
  done
fi
check "/etc/gitopsd/gitopsd.json is a conffile" \
  bash -c "dpkg-query -W -f='\${Conffiles}' gitopsd | grep -q '^ /etc/gitopsd/gitopsd.json '"
check "user gitopsd exists" getent passwd gitopsd >/dev/null
check "gitopsd's home is /var/lib/gitopsd" test "$(getent passwd gitopsd | cut -d: -f6)" = /var/lib/gitopsd
check "gitopsd has no login shell" bash -c "getent passwd gitopsd | cut -d: -f7 | grep -q nologin"
check "/var/lib/gitopsd is gitopsd's, 0700" \
  test "$(stat -c '%U:%G %a' /var/lib/gitopsd)" = "gitopsd:gitopsd 700"
check "the unit is enabled (deb-systemd-helper)" \
  test -L /etc/systemd/system/multi-user.target.wants/gitopsd.service
check "gitopsd version" bash -c "/usr/bin/gitopsd version | grep -q '^gitopsd [0-9]'"
/usr/bin/gitopsd version
check "gitopsctl --help" bash -c "/usr/bin/gitopsctl --help >/dev/null"
if command -v systemd-analyze >/dev/null; then
  man_check=yes
  [ "$man_excluded" = no ] || man_check=no
  out=$(systemd-analyze verify --man=$man_check /lib/systemd/system/gitopsd.service 2>&1) || true
  check "systemd-analyze verify of the installed unit is clean: $out" test -z "$out"
fi

step "validate: the example repository, a broken object, the default configuration"
check "gitopsd validate examples/shop/.gitops" /usr/bin/gitopsd validate "$src/examples/shop/.gitops"
mkdir -p "$scratch/objects/templates"
printf '{\n  "$schema": "file:///usr/share/gitopsd/schemas/template.schema.json",\n  "kind": "Template",\n  "spec": 3\n}\n' \
  >"$scratch/objects/templates/broken.json"
rc=0
out=$(/usr/bin/gitopsd validate "$scratch/objects" 2>/dev/null) || rc=$?
check "validate exits 1 on a broken object (got $rc)" test "$rc" -eq 1
check "validate names path:line:col: $out" \
  grep -q 'templates/broken.json:[0-9]*:[0-9]*: error:' <<<"$out"
# The installed schema, read by an independent validator, accepts the
# installed default configuration.
if /usr/bin/python3 -c 'import jsonschema' 2>/dev/null; then
  check "the default configuration is valid against the installed schema" /usr/bin/python3 -c '
import json, jsonschema
schema = json.load(open("/usr/share/gitopsd/schemas/config.schema.json"))
jsonschema.Draft7Validator(schema).validate(json.load(open("/etc/gitopsd/gitopsd.json")))'
fi

step "run the installed daemon as gitopsd"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The packaged default, on a free port (7780 may be taken on a CI machine).
$SUDO sh -c "sed 's/127.0.0.1:7780/127.0.0.1:$port/' /etc/gitopsd/gitopsd.json >/etc/gitopsd/test-deb.json
             chown root:gitopsd /etc/gitopsd/test-deb.json && chmod 0640 /etc/gitopsd/test-deb.json"
(cd / && exec $SUDO setpriv --reuid=gitopsd --regid=gitopsd --init-groups --reset-env \
   /usr/bin/gitopsd serve --config /etc/gitopsd/test-deb.json) >"$scratch/daemon.log" 2>&1 &
daemon_pid=$!
# With sudo, $! is sudo's pid; sudo passes SIGTERM on and exits as gitopsd does.
up=no
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=yes; break; fi
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
[ "$up" = yes ] || { cat "$scratch/daemon.log"; fail "the daemon did not answer /healthz on port $port"; }
check "GET /metrics" bash -c "curl -fsS http://127.0.0.1:$port/metrics >/dev/null"
check "gitopsctl status" bash -c "/usr/bin/gitopsctl --server http://127.0.0.1:$port status >/dev/null"
check "the daemon runs as gitopsd" \
  test "$(ps -o user= -p "$(pgrep -f -n '^/usr/bin/gitopsd serve --config /etc/gitopsd/test-deb.json')")" = gitopsd
$SUDO kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
[ "$rc" -eq 0 ] || { cat "$scratch/daemon.log"; fail "the daemon exited $rc after SIGTERM"; }
sed 's/^/  daemon: /' "$scratch/daemon.log"
check "the state database is in /var/lib/gitopsd" $SUDO test -f /var/lib/gitopsd/state.db

step "upgrade to $version, keeping a locally changed conffile"
$SUDO sed -i 's/"level": "info"/"level": "debug"/' /etc/gitopsd/gitopsd.json
$SUDO dpkg -i --force-confold "$new_deb" >/dev/null
check "version $version installed" test "$(dpkg-query -W -f='${Version}' gitopsd)" = "$version"
check "the local change survives the upgrade" grep -q '"level": "debug"' /etc/gitopsd/gitopsd.json
check "the new default is beside it as .dpkg-dist" grep -q '"\$schema"' /etc/gitopsd/gitopsd.json.dpkg-dist
check "the state survives the upgrade" $SUDO test -f /var/lib/gitopsd/state.db
check "the unit is still enabled" test -L /etc/systemd/system/multi-user.target.wants/gitopsd.service

step "remove: programs go, configuration and state stay"
$SUDO dpkg -r gitopsd >/dev/null
check "status config-files" \
  test "$(dpkg-query -W -f='${db:Status-Status}' gitopsd)" = config-files
for f in /usr/bin/gitopsd /usr/bin/gitopsctl /lib/systemd/system/gitopsd.service; do
  check "$f removed" test ! -e "$f"
done
check "the conffile stays" test -f /etc/gitopsd/gitopsd.json
check "the state stays" $SUDO test -f /var/lib/gitopsd/state.db

step "purge: configuration and state go, the user stays"
$SUDO dpkg -P gitopsd >/dev/null
check "dpkg forgot gitopsd" bash -c "! dpkg-query -W gitopsd >/dev/null 2>&1 || \
  test \"\$(dpkg-query -W -f='\${db:Status-Status}' gitopsd)\" = not-installed"
check "/etc/gitopsd removed" test ! -e /etc/gitopsd
check "/var/lib/gitopsd removed" test ! -e /var/lib/gitopsd
check "no enable link left" test ! -e /etc/systemd/system/multi-user.target.wants/gitopsd.service
check "no mask left" test ! -L /etc/systemd/system/gitopsd.service
check "the system user stays (Debian practice)" getent passwd gitopsd >/dev/null
