#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv used by the interop tests in
# tests/python/, with Google's API client libraries and SAP's OData client pinned.
#
# Usage: scripts/python-venv.sh
#   HTTP_BATCH_PYVENV=/some/dir  override the venv location (default: target/pyvenv
#                                under the repository root)
#   PYTHON=python3.11            interpreter used to create the venv (default: python3)
#
# The last line printed is the absolute path of the venv's python interpreter.
# When the venv already holds the pinned versions this returns at once, without
# touching the network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HTTP_BATCH_PYVENV:-$ROOT/target/pyvenv}"
PYTHON="${PYTHON:-python3}"

PACKAGES=(
  "google-api-python-client==2.202.0"
  "google-auth==2.62.2"
  "google-auth-httplib2==0.4.4"
  "httplib2==0.32.1"
  # SAP's OData 2 client, for the dialect interop test (tests/odata_clients.rs).
  "pyodata==1.12.1"
  # Google Cloud Storage's fsspec client, for its batch deletes (tests/dialect_clients.rs).
  "gcsfs==2026.10.1"
)

# A stamp records what was installed; when it matches, there is nothing to do.
STAMP="$VENV/.http-batch-stamp"
WANT="$(printf '%s\n' "${PACKAGES[@]}")"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  # Debian's python3 makes no venv without its python3-venv package (ensurepip).
  if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    "$ROOT/scripts/system-deps.sh" python
  fi
  echo "creating virtualenv at $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" >&2
fi

echo "installing ${PACKAGES[*]}" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-input "${PACKAGES[@]}" >&2
"$VENV/bin/python" -c 'import googleapiclient, google.auth, google_auth_httplib2, httplib2, pyodata, gcsfs' >&2

printf '%s\n' "${PACKAGES[@]}" >"$STAMP"
echo "$VENV/bin/python"
