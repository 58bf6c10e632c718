#!/usr/bin/env bash
# Builds the Debian package of the server side with cargo-deb (installed at
# a pinned version when missing): the static x86_64 binary of
# scripts/cross.sh, the systemd unit mpbridge-remote.service, the example
# config and docs/SERVER.md. Installs nothing on this machine.
# Output: $CARGO_TARGET_DIR/debian/mpbridge_<version>-1_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
t=x86_64-unknown-linux-musl

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "deb: installing cargo-deb $CARGO_DEB_VERSION"
    nice -n 10 cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
[ -x "$target_dir/cross/$t/router/mpbridge" ] || scripts/cross.sh x86_64
mkdir -p "$target_dir/debian"
CARGO_TARGET_DIR="$target_dir/cross" cargo deb -p mpbridge --no-build --no-strip \
    --target "$t" --profile router --output "$target_dir/debian/"
ls -l "$target_dir/debian/"*.deb
