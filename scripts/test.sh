#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs the whole test suite:
# formatting, lints, unit tests, namespace integration tests, a bounded fuzz
# run, then the router side: cross builds, the router binaries under
# qemu-user, the packages, the full-system VMs (arm64 on Linux 6.12, armv7
# and mipsel on 6.1), and the lab in an
# x86_64 VM for what needs netem (delay, jitter, bursty loss) and for real
# 802.11 (mac80211_hwsim, hostapd, wpa_supplicant). Every test
# builds and removes its own network namespaces. Downloads and toolchains are
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
shellcheck scripts/*.sh scripts/vm/*.sh openwrt/mpbridge/files/mpbridge.init

step "module layers: no import cycle (scripts/layers.sh)"
scripts/layers.sh

step "cargo test"
# tests/quic.rs makes a venv with aioquic from PyPI: Debian's python3 needs python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
cargo test --workspace --locked

step "cargo test, feature metrics (the Prometheus endpoint)"
cargo test -p mpbridge --features metrics --locked --lib --test status

step "cargo test (feature uci: OpenWrt's UCI config; the init script under busybox ash)"
cargo test -p mpbridge --locked --features uci --lib uci
command -v busybox >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
cargo test -p mpbridge --locked --features uci --test openwrt_init

step "OpenWrt management plane: network names and the LuCI app (real ubusd, rpcd, uhttpd)"
# scripts/openwrt-mgmt.sh exits 3 (and says why) when ../shared/vendor is
# not there; the step is then skipped, loudly.
mgmt_rc=0
mgmt_prefix=$(scripts/openwrt-mgmt.sh) || mgmt_rc=$?
if [ "$mgmt_rc" -eq 0 ]; then
	MPBRIDGE_OPENWRT_PREFIX="$mgmt_prefix" \
		cargo test -p mpbridge --locked --features uci --test luci -- --ignored
elif [ "$mgmt_rc" -eq 3 ]; then
	echo "SKIPPED: the LuCI and network-name tests (no OpenWrt sources, see above)"
else
	exit "$mgmt_rc"
fi
# The LuCI views' logic, loaded as LuCI's loader does (Debian's nodejs).
command -v node >/dev/null || apt-get install -y --no-install-recommends nodejs
node --test openwrt/luci-app-mpbridge/tests/*.test.js

step "fuzz (bounded)"
scripts/fuzz.sh

step "cross builds (scripts/cross.sh)"
scripts/cross.sh

step "qemu-user: the router binaries under emulation"
# tools/connhold: a threaded socket program for qemu-mipsel, and the VMs'
# held connections.
scripts/cross.sh --connhold aarch64 armv7 mipsel
cargo test -p mpbridge --locked --test qemu_user -- --ignored

step "qemu-mips: the big-endian binary, and the codec's unit tests on it"
mips_bin="${CARGO_TARGET_DIR:-target}/cross/mips-unknown-linux-musl/router/mpbridge"
qemu-mips "$mips_bin" --version
key=$(qemu-mips "$mips_bin" genkey)
[ "${#key}" -eq 64 ] || { echo "test: genkey under qemu-mips printed ${key@Q}, not 64 hex digits" >&2; exit 1; }
scripts/cross.sh --codec-tests mips

step "packages: .ipk (24.10) and .apk (25.12) per OpenWrt arch, .deb; installed with the real apk"
scripts/ipk.sh
scripts/apk.sh
scripts/deb.sh
MPBRIDGE_ALL_ARCHES=1 cargo test -p mpbridge --locked --test packages -- --ignored

step "arm64 VM: Debian's 6.12 kernel under qemu-system-aarch64"
scripts/vm-test.sh arm64

step "armv7 VM: bookworm's 6.1 armmp-lpae under qemu-system-arm (TCP Fast Open on MPTCP reported lost)"
scripts/vm-test.sh armv7

step "mipsel VM: bookworm's 6.1 4kc-malta under qemu-system-mipsel (8 MB moved; TFO on MPTCP reported lost)"
scripts/vm-test.sh mipsel

step "x86_64 VM: the lab with netem (2 links, 5 and 30 ms one way) under qemu-system-x86_64"
cargo test -p mpbridge-lab --locked --test vm -- --ignored --exact both_in_one_vm

step "x86_64 VM: one flow over 20 Mbit/s and a slow lossy link (netem) is not below the best link alone (paths.slow_links)"
cargo test -p mpbridge-lab --locked --test slow_links -- --ignored

step "x86_64 VM: two WPA2 4-address Wi-Fi links (mac80211_hwsim), a checked transfer across a disassociation"
cargo test -p mpbridge-lab --locked --test vm -- --ignored --exact \
    a_wifi_link_carries_a_transfer_across_a_disassociation_and_leaves_nothing

step "done"
