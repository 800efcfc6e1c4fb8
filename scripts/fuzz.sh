#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time, on the stable toolchain.
#
# Usage: scripts/fuzz.sh <target> <seconds> [more libFuzzer flags...]
#   targets: multipart_reader, nested_http, whole_layer (see fuzz/fuzz_targets/)
#   SANITIZER=none scripts/fuzz.sh ...   builds without AddressSanitizer (faster, less checking)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module); on a
# stable toolchain RUSTC_BOOTSTRAP=1 lets rustc accept them, and the stable toolchain ships the
# AddressSanitizer runtime for x86_64-unknown-linux-gnu. One libFuzzer process runs on one core.
# Seeds in fuzz/seeds/<target>/ are copied into the working corpus fuzz/corpus/<target>/ (not
# in git); crashes land in fuzz/artifacts/<target>/ (not in git).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 <target> <seconds> [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
secs=$2
shift 2

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if [ ! -f "fuzz_targets/$target.rs" ]; then
    echo "no fuzz target named $target" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

mkdir -p "corpus/$target"
cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true

export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer "${SANITIZER:-address}" "$target" "corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
