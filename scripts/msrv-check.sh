#!/usr/bin/env bash
# Fails when a locked dependency of the library needs a newer Rust than the crate's own
# `rust-version`.
#
# The MSRV is the library's, with all its features, on every platform: the set of packages is
# `cargo tree -e normal,build`, which resolves features as a user's build does (`cargo metadata`
# would also count the features that dev-dependencies switch on, such as tower's `full`). Build
# dependencies count, since the same toolchain compiles them. Dev-dependencies (tests, benches,
# examples) are left out: they may need a newer Rust. Each package's `rust-version` comes from
# `cargo metadata`; packages that declare none cannot be checked and are listed.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree --locked -e normal,build --all-features --target all --prefix none -f '{p}')
cargo metadata --locked --format-version 1 --all-features | TREE="$tree" python3 -c '
import json, os, sys

meta = json.load(sys.stdin)
root = meta["resolve"]["root"]
by_name = {(p["name"], p["version"]): p for p in meta["packages"]}
ours = next(p for p in meta["packages"] if p["id"] == root)

def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

msrv = ours["rust_version"]
if not msrv:
    sys.exit("Cargo.toml has no rust-version")
deps = set()
for line in os.environ["TREE"].splitlines():
    name, ver = line.split()[:2]
    if (name, ver.lstrip("v")) != (ours["name"], ours["version"]):
        deps.add(by_name[(name, ver.lstrip("v"))]["id"])
packages = {p["id"]: p for p in meta["packages"]}
needs = sorted(
    ((packages[i]["rust_version"], packages[i]["name"], packages[i]["version"])
     for i in deps if packages[i]["rust_version"]),
    key=lambda t: version(t[0]), reverse=True)
unknown = sorted(packages[i]["name"] for i in deps if not packages[i]["rust_version"])
too_new = [n for n in needs if version(n[0]) > version(msrv)]

print(f"rust-version {msrv}; {len(deps)} library dependencies, the newest need:")
for rv, name, ver in needs[:5]:
    print(f"  {rv:8} {name} {ver}")
if unknown:
    print("no rust-version declared:", ", ".join(unknown))
sys.stdout.flush()
for rv, name, ver in too_new:
    print(f"error: {name} {ver} needs Rust {rv}, above our rust-version", file=sys.stderr)
sys.exit(1 if too_new else 0)
'
