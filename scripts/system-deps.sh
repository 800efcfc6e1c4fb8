#!/usr/bin/env bash
# Installs a system tool the interop tests need when this machine lacks it, from the Debian
# archive: `python` (python3 with venv and pip), `node` (Node.js with npm), `chromium` (the
# headless browser, with a font so its screenshots have text), `postgres` (the PostgreSQL server,
# for the database tests; `scripts/postgres.sh` starts throwaway ones), `redis` (the server the
# shared answer store's tests start on a loopback port) or `nginx` (the reverse proxy
# `scripts/fair-bench.sh` runs in front of the farm). The other scripts call it only when the
# tool is missing, so on a machine that has them it never runs.
#
# Usage: scripts/system-deps.sh python|node|chromium|postgres|redis|nginx
#
# Needs apt-get and root (or password-less sudo). Exit status: 0 installed; 1 it could not be
# installed here, with the reason on stderr.
set -euo pipefail

case "${1:-}" in
  python) packages=(python3 python3-venv python3-pip) ;;
  node) packages=(nodejs npm) ;;
  chromium) packages=(chromium fonts-dejavu-core) ;;
  postgres) packages=(postgresql) ;;
  redis) packages=(redis-server) ;;
  nginx) packages=(nginx) ;;
  *)
    echo "usage: $0 python|node|chromium|postgres|redis|nginx" >&2
    exit 2
    ;;
esac

if ! command -v apt-get >/dev/null; then
  echo "this machine lacks ${packages[*]} and has no apt-get to install them; install them and run again" >&2
  exit 1
fi
if [[ "$(id -u)" -eq 0 ]]; then
  run=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  run=(sudo -n)
else
  echo "this machine lacks ${packages[*]}; installing them needs root; install them and run again" >&2
  exit 1
fi

# Several test binaries may ask at once; one installs, the others wait and find it done.
exec 8>"${TMPDIR:-/tmp}/http-batch-system-deps.lock"
if command -v flock >/dev/null; then
  flock 8
fi

export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq >&2
for package in "${packages[@]}"; do
  # Some Node.js builds (NodeSource's) bring npm with them and conflict with Debian's npm
  # package: install it only when the command is still missing.
  if [[ "$package" == npm ]] && command -v npm >/dev/null; then
    continue
  fi
  echo "installing $package with apt-get" >&2
  "${run[@]}" apt-get install -y -qq --no-install-recommends "$package" >&2
done
