#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv for the Microsoft Graph SDK interop test
# (tests/python/msgraph_batch.py, run by tests/json_batch.rs), with msgraph-core and the Kiota
# packages it needs pinned.
#
# Usage: scripts/msgraph-venv.sh
#   HTTP_BATCH_MSGRAPH_VENV=/some/dir  venv location (default: target/msgraph-venv under the
#                                      repository root)
#   PYTHON=python3.11                  interpreter that creates the venv (default: python3)
#
# The last line printed is the absolute path of the venv's python. When the venv already holds
# the pinned versions it returns at once, without touching the network.
#
# Exit status: 0 ready; 75 the packages could not be installed (no package index, no venv
# module), which the Rust test reports as a skip; anything else is a real failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HTTP_BATCH_MSGRAPH_VENV:-$ROOT/target/msgraph-venv}"
PYTHON="${PYTHON:-python3}"

PACKAGES=(
  "msgraph-core==1.5.2"
  "microsoft-kiota-abstractions==1.16.0"
  "microsoft-kiota-http==1.16.0"
  "microsoft-kiota-serialization-json==1.16.0"
  "httpx==0.28.1"
  # msgraph-core imports `deprecated` without declaring it.
  "Deprecated==1.3.1"
)

# Several test binaries may call this at once; one installs, the others wait for it.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
if command -v flock >/dev/null; then
  flock 9
fi

STAMP="$VENV/.http-batch-stamp"
WANT="$(printf '%s\n' "${PACKAGES[@]}")"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  # Debian's python3 makes no venv without its python3-venv package (ensurepip).
  if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    "$ROOT/scripts/system-deps.sh" python || true
  fi
  echo "creating virtualenv at $VENV" >&2
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    echo "cannot create a virtualenv with $PYTHON (is python3-venv installed?)" >&2
    rm -rf "$VENV"
    exit 75
  fi
fi

echo "installing ${PACKAGES[*]}" >&2
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  "${PACKAGES[@]}" >&2; then
  echo "pip could not install the packages (is the package index reachable?)" >&2
  exit 75
fi

# A broken install is a real failure, not a skip.
"$VENV/bin/python" -c 'import httpx, msgraph_core.requests.batch_request_content, kiota_serialization_json, kiota_http' >&2

printf '%s\n' "${PACKAGES[@]}" >"$STAMP"
echo "$VENV/bin/python"
