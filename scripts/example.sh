#!/usr/bin/env bash
# Builds gitopsd and runs it on the bundled example repository (examples/shop)
# with the embedded defaults: the example is committed into a local Git
# repository, the daemon syncs it and serves the API on 127.0.0.1:7780.
# Installs missing Debian packages first. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/install-deps.sh --build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target gitopsd

demo=build/example
repo="$demo/shop.git"
if [ ! -d "$repo" ]; then
  rm -rf "$demo/work"
  mkdir -p "$demo"
  git init -q --bare -b main "$repo"
  cp -r examples/shop "$demo/work"
  git -C "$demo/work" init -q -b main
  git -C "$demo/work" add -A
  git -C "$demo/work" -c user.name=gitopsd-example -c user.email=example@localhost \
    commit -q -m "Example shop repository"
  git -C "$demo/work" push -q "$PWD/$repo" main
fi

cat <<EOT
gitopsd is starting on the example repository $repo
  objects:   curl -s http://127.0.0.1:7780/api/v1/objects
  one:       curl -s http://127.0.0.1:7780/api/v1/objects/ReleaseFlow/production
  sync:      curl -s http://127.0.0.1:7780/api/v1/sync
  metrics:   curl -s http://127.0.0.1:7780/metrics
Edit a file in $demo/work/.gitops, commit and 'git push origin main' there: the
daemon applies it within its 5 s poll interval. Ctrl-C stops it.
EOT
git -C "$demo/work" remote get-url origin >/dev/null 2>&1 ||
  git -C "$demo/work" remote add origin "$PWD/$repo"

# To show a sync after the first one: once the daemon is ready, edit the
# release flow's description, commit and push, as a person would.
(
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:7780/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1
  f="$demo/work/.gitops/release-flows/production.json"
  sed -i "s/\"description\": \"[^\"]*\"/\"description\": \"Edited at $(date +%T) by scripts\/example.sh\"/" "$f"
  git -C "$demo/work" -c user.name=gitopsd-example -c user.email=example@localhost \
    commit -q -am "Example: edit the production release flow's description"
  git -C "$demo/work" push -q origin main
  echo "(example) pushed a change to .gitops/release-flows/production.json; the next sync applies it"
) &

exec build/daemon/gitopsd serve --repo "$PWD/$repo" --state-dir "$demo/state" \
  --listen 127.0.0.1:7780 --poll-interval 5s
