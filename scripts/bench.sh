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
cargo build --profile router --locked -p mpbridge
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/mpbridge-lab" bench --mpbridge-router "$target/router/mpbridge" "$@"
