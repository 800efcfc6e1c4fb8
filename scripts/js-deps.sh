#!/usr/bin/env bash
# Installs (idempotently) the pinned JavaScript packages for the interop and browser tests
# (tests/js/package.json + package-lock.json, used by tests/graph_js.rs, tests/browser.rs,
# tests/odata_clients.rs and tests/dialect_clients.rs)
# into target/js.
#
# Usage: scripts/js-deps.sh
#   HTTP_BATCH_JS_DIR=/some/dir  install location (default: target/js under the repository root)
#   NPM=npm                      npm executable
#
# The last line printed is the absolute path of the node_modules directory. When it already
# holds the pinned lockfile's packages it returns at once, without touching the network.
#
# Exit status: 0 ready; 75 npm cannot reach the registry, or Node.js is missing and cannot be
# installed (see scripts/system-deps.sh), which the Rust test reports as a skip with the reason;
# anything else is a real failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${HTTP_BATCH_JS_DIR:-$ROOT/target/js}"
NPM="${NPM:-npm}"
SRC="$ROOT/tests/js"

# Several test binaries may call this at once; one installs, the others wait for it.
mkdir -p "$DIR"
exec 9>"$DIR.lock"
if command -v flock >/dev/null; then
  flock 9
fi

STAMP="$DIR/node_modules/.http-batch-stamp"
WANT="$(cat "$SRC/package.json" "$SRC/package-lock.json")"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$DIR/node_modules"
  exit 0
fi

# A machine without Node.js gets it from the Debian archive; if that cannot be done here, the
# test is skipped with the reason.
if ! command -v "$NPM" >/dev/null || ! command -v node >/dev/null; then
  if ! "$ROOT/scripts/system-deps.sh" node; then
    echo "Node.js and npm are missing and could not be installed" >&2
    exit 75
  fi
fi

# npm works on the directory holding package.json, so the pinned manifest is copied out of
# the source tree: node_modules then lives under target/ and never in tests/.
cp "$SRC/package.json" "$SRC/package-lock.json" "$DIR/"
echo "installing the packages pinned in tests/js/package-lock.json into $DIR" >&2
if ! (cd "$DIR" && "$NPM" ci --no-audit --no-fund --loglevel=error >&2); then
  # Only an unreachable registry is a skip; a registry that answers but an install that
  # still fails is a real failure.
  if ! (cd "$DIR" && "$NPM" ping --loglevel=silent >/dev/null 2>&1); then
    echo "npm cannot reach the registry" >&2
    exit 75
  fi
  echo "npm ci failed while the registry is reachable" >&2
  exit 1
fi

# A broken install is a real failure, not a skip.
(cd "$DIR" && node -e 'require("@microsoft/microsoft-graph-client"); require("playwright-core"); require("@odata/client"); require("odata"); require("@azure/data-tables")' && node --input-type=module -e 'await import("@pnp/sp"); await import("@pnp/queryable")') >&2

printf '%s' "$WANT" >"$STAMP"
echo "$DIR/node_modules"
