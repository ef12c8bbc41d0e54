#!/usr/bin/env bash
# The workspace's rust-version is honest: no dependency in Cargo.lock (resolved for the
# workspace with every feature, dev-dependencies included) declares a newer one.
# Fails naming each dependency that does. Needs the dependencies' sources in cargo's
# cache (run it after a build, or after `cargo fetch --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --format-version 1 --locked --offline --all-features |
  python3 -c '
import json, sys

def parse(v):
    # "1.94", "1.94.1": compared with a missing patch as 0.
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
declared = {}
for p in meta["packages"]:
    if p["id"] in members:
        if not p.get("rust_version"):
            sys.exit("check-msrv: workspace member " + p["name"] + " declares no rust-version")
        declared[p["name"]] = p["rust_version"]
msrv = min(declared.values(), key=parse)

deps = [
    (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members and p.get("rust_version")
]
needed = max((rv for _, _, rv in deps), key=parse, default=None)
newer = sorted(
    (d for d in deps if parse(d[2]) > parse(msrv)),
    key=lambda d: (parse(d[2]), d[0]),
    reverse=True,
)
if newer:
    print(f"check-msrv: the workspace declares rust-version {msrv}, but these dependencies need more:")
    for name, version, rv in newer:
        print(f"  {name} {version}: rust-version {rv}")
    print(f"check-msrv: set rust-version to at least {needed} in Cargo.toml ([workspace.package])")
    sys.exit(1)
print(f"check-msrv: rust-version {msrv} covers every dependency (the highest they declare: {needed})")
'
