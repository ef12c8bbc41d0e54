#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need when it is missing
# (idempotent): moto's server for the conformance test against a Lambda we did not write,
# and, as root, iproute2 and nftables for the NAT lab and redis-server for the Redis tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  echo "installing moto[server] for the conformance test" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi

# The NAT lab (tests/nat_lab.rs) needs root, iproute2 and nftables; without them it
# reports itself as ignored, with the reason.
if [ "$(id -u)" = 0 ] && ! { command -v ip && command -v nft; } >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1; then
  echo "installing iproute2 and nftables for the NAT lab" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables >/dev/null
fi

# The disk-full test (tests/dead_letter_process.rs) mounts a 64 KiB tmpfs: it needs root
# and `mount`; without them it reports itself as ignored, with the reason.
if [ "$(id -u)" = 0 ] && ! command -v mount >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1; then
  echo "installing mount for the disk-full test" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mount >/dev/null
fi

# The Redis tests (tests/redis.rs) start their own redis-server; without one they report
# themselves as ignored, with the reason.
if [ "$(id -u)" = 0 ] && ! command -v redis-server >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server for the Redis tests" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

cargo test --workspace --all-features -j2 "$@"
