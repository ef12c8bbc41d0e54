#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need when it is missing
# (idempotent): moto's server for the conformance test against a Lambda we did not write.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  echo "installing moto[server] for the conformance test" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi

cargo test --workspace --all-features -j2 "$@"
