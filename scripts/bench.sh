#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root), builds mpbridge (release for the
# lab, `router` profile for its size) and runs `mpbridge-lab bench`: mpbridge
# against shadowsocks-rust (built once into a cache outside the repository;
# the first run takes minutes more) and the physical limit. Writes
# docs/BENCHMARKS.md and docs/benchmarks.svg. Extra arguments go to
# `mpbridge-lab bench` (e.g. --quick, --cases 1,6, --note "quiet machine").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v strip >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils >/dev/null
}
cargo build --release --locked -p mpbridge -p mpbridge-lab
# The router build as scripts/cross.sh makes it, where stable allows: no
# unwind tables of our own, not position-independent (no dynamic relocation
# per data pointer: 90 KB). An explicit --target keeps these flags off the
# build scripts and proc macros.
RUSTFLAGS="-C force-unwind-tables=no -C relocation-model=static" \
    cargo build --profile router --locked -p mpbridge --target x86_64-unknown-linux-gnu
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/mpbridge-lab" bench \
    --mpbridge-router "$target/x86_64-unknown-linux-gnu/router/mpbridge" "$@"
