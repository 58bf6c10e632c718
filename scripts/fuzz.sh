#!/usr/bin/env bash
# Builds the cargo-fuzz targets of the Convert codec and runs each for a
# bounded time (FUZZ_SECONDS, default 30). Needs the nightly toolchain;
# installs cargo-fuzz (pinned) into ~/.cargo/bin when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-30}
CARGO_FUZZ_VERSION=0.13.2

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly); cannot fuzz" >&2
    exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in decode cookie; do
    echo "fuzz: $target for ${secs}s"
    if ! cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)' "$log" || tail -n 3 "$log"
done
