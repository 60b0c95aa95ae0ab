#!/usr/bin/env bash
# Installs the system programs the end-to-end tests use, from Debian's packages, when missing:
# prometheus + promtool (a real Prometheus server in the e2e tests) and chromium (the HTML report
# is checked in a real headless browser). Needs root (or sudo); says what to do otherwise.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "tokenwatt tests need: ${need[*]} (Debian packages). Install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages for the tests: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# apt is serialised: several test files may ask at once.
exec 9>/tmp/tokenwatt-apt.lock
flock 9
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
