#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the whole test suite:
# formatting, lints, unit tests, namespace integration tests, a bounded fuzz
# run. Every test builds and removes its own network namespaces.
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

step "cargo test"
cargo test --workspace --locked

step "cargo test, feature metrics (the Prometheus endpoint)"
cargo test -p mpbridge --features metrics --locked --lib --test status

step "fuzz (bounded)"
scripts/fuzz.sh

step "done"
