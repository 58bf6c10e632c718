#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the whole test suite:
# formatting, lints, unit tests, namespace integration tests, a bounded fuzz
# run, then the router side: cross builds, the router binaries under
# qemu-user, the packages, and the full-system arm64 VM. Every test builds
# and removes its own network namespaces. Downloads and toolchains are
# cached under /var/cache/mpbridge (MPBRIDGE_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/setup.sh

step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "shellcheck"
shellcheck scripts/*.sh scripts/vm/guest.sh openwrt/mpbridge/files/mpbridge.init

step "module layers: no import cycle (scripts/layers.sh)"
scripts/layers.sh

step "cargo test"
# tests/quic.rs makes a venv with aioquic from PyPI: Debian's python3 needs python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
cargo test --workspace --locked

step "cargo test, feature metrics (the Prometheus endpoint)"
cargo test -p mpbridge --features metrics --locked --lib --test status

step "cargo test (feature uci: OpenWrt's UCI config)"
cargo test -p mpbridge --locked --features uci --lib uci

step "fuzz (bounded)"
scripts/fuzz.sh

step "cross builds (scripts/cross.sh)"
scripts/cross.sh

step "qemu-user: the router binaries under emulation"
cargo test -p mpbridge --locked --test qemu_user -- --ignored

step "packages: .ipk per arch, .deb, their layout"
scripts/ipk.sh
scripts/deb.sh
cargo test -p mpbridge --locked --test packages -- --ignored

step "arm64 VM: Debian's 6.12 kernel under qemu-system-aarch64"
scripts/vm-test.sh

step "done"
