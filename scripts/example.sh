#!/usr/bin/env bash
# Builds gitopsd and runs it on the bundled example repository (examples/shop)
# with the embedded defaults, then shows what it does:
#   1. the example is committed into a local Git repository; the daemon syncs
#      it, and the shop Template (autorun) creates the SQLite database, builds
#      the app, runs its migration job and starts the web service;
#   2. two releases through the production flow (backup -> build -> migrate ->
#      deploy), each with a new VERSION committed and pushed;
#   3. a rollback to the first of them, which serves that version again.
# The daemon then keeps running on 127.0.0.1:7780 until Ctrl-C.
# Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/install-deps.sh --build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target gitopsd gitopsctl

demo="$PWD/build/example"
repo="$demo/shop.git"
api=http://127.0.0.1:7780
git_as_example() {
  git -C "$demo/work" -c user.name=gitopsd-example -c user.email=example@localhost "$@"
}
if [ ! -d "$repo" ]; then
  rm -rf "$demo/work"
  mkdir -p "$demo"
  git init -q --bare -b main "$repo"
  cp -r examples/shop "$demo/work"
  git -C "$demo/work" init -q -b main
  git -C "$demo/work" remote add origin "$repo"
  git_as_example add -A
  git_as_example commit -q -m "Example shop repository"
  git_as_example push -q origin main
fi
if [ ! -f "$demo/token" ]; then
  build/daemon/gitopsctl --json token create example --role write >"$demo/token.json"
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["token"])' \
    "$demo/token.json" >"$demo/token"
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); del t["token"]; print(json.dumps([t]))' \
    "$demo/token.json" >"$demo/tokens.json"
  rm "$demo/token.json"
fi
export GITOPSD_TOKEN
GITOPSD_TOKEN=$(cat "$demo/token")
ctl() { build/daemon/gitopsctl "$@"; }

build/daemon/gitopsd serve --repo "$repo" --state-dir "$demo/state" --listen 127.0.0.1:7780 \
  --poll-interval 5s --api-tokens-file "$demo/tokens.json" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
for _ in $(seq 200); do curl -sf $api/readyz >/dev/null 2>&1 && break; sleep 0.1; done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
served() {  # the version the shop's web service answers with
  python3 - "$api" <<'PY'
import json, sys, urllib.request
services = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/services"))["services"]
port = next((s["port"] for s in services if s["name"] == "shop-web"), None)
print(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/"))["version"] if port else "-")
PY
}
wait_runs() {  # until no run is pending or running
  for _ in $(seq 600); do
    ctl --json runs | grep -qE '"status": ?"(pending|queued|running)"' || return 0
    sleep 0.2
  done
}
release() {  # commit a new VERSION and push it: the production flow's Git trigger releases it; prints the run id
  local version=$(( $(cat "$demo/work/VERSION") + 1 ))
  echo "$version" >"$demo/work/VERSION"
  git_as_example commit -q -am "Release version $version"
  git_as_example push -q origin main
  local sha
  sha=$(git -C "$demo/work" rev-parse HEAD)
  curl -sf -X POST -H "Authorization: Bearer $GITOPSD_TOKEN" \
    $api/api/v1/repositories/shop/sync >/dev/null
  python3 - "$api" "$sha" <<'PY'
import json, sys, time, urllib.request
api, sha = sys.argv[1], sys.argv[2]
for _ in range(1500):
    runs = json.load(urllib.request.urlopen(api + "/api/v1/runs?flow=production"))["runs"]
    run = next((r for r in runs if (r.get("refs") or {}).get("app", {}).get("sha") == sha), None)
    if run and run["concluded"]:
        print(run["id"])
        break
    time.sleep(0.2)
else:
    sys.exit("no release of " + sha + " concluded")
PY
}

say "synced; the shop Template ran on its own (autorun)"
wait_runs
ctl status
ctl runs
say "web service answers version $(served)"

first=$(release)
say "pushed; the production flow's Git trigger ran release $first: the web service answers version $(served)"
ctl get run "$first"
second=$(release)
say "release run $second: the web service answers version $(served)"

say "rolling back to release run $first"
ctl rollback "$first" >/dev/null
wait_runs
ctl runs
say "after the rollback the web service answers version $(served)"

cat <<EOT

gitopsd keeps running on $api (Ctrl-C stops it; the shop's services stay up
and are re-adopted at the next start). Try:
  GITOPSD_TOKEN=\$(cat $demo/token) build/daemon/gitopsctl runs
  curl -s $api/api/v1/objects ; curl -s $api/metrics
  edit $demo/work/.gitops/*, commit and 'git push origin main' there
EOT
wait $daemon
