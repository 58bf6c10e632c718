#!/usr/bin/env bash
# Installs what building and testing mpbridge needs on a Debian machine (as
# root): the network tools the tests drive and the Rust components. Safe to
# run again: it installs only what is missing.
set -euo pipefail

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ss >/dev/null || need_apt+=(iproute2)
command -v nft >/dev/null || need_apt+=(nftables)
# The lab's delay line (mpbridge-lab --delay-line) hands packets to NFQUEUE
# through an iptables rule: this kernel's nftables has no queue statement.
command -v iptables >/dev/null || need_apt+=(iptables)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v nstat >/dev/null || need_apt+=(iproute2)
command -v prlimit >/dev/null || need_apt+=(util-linux)
# The router side: foreign binaries under emulation, script lint.
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
# The Wi-Fi lab (mpbridge-lab run wifi-bridge, in the VM over this root):
# access points, stations and nl80211 from Debian's packages.
command -v hostapd >/dev/null || need_apt+=(hostapd)
command -v wpa_supplicant >/dev/null || need_apt+=(wpasupplicant)
command -v iw >/dev/null || need_apt+=(iw)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need_apt[*]}; run as root so they can be installed" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt

if [ "$(cat /proc/sys/net/mptcp/enabled 2>/dev/null || echo missing)" != 1 ]; then
    echo "setup: this kernel has no MPTCP enabled (/proc/sys/net/mptcp/enabled); the tests need it" >&2
    exit 1
fi
