#!/usr/bin/env bash
# Packs side-loadable OpenWrt packages (.ipk) of the binaries of
# scripts/cross.sh, without the OpenWrt SDK: per architecture a gzip'd tar
# of debian-binary, control.tar.gz and data.tar.gz, as opkg reads them.
#
#   scripts/ipk.sh                 # every arch whose binary exists
#   scripts/ipk.sh aarch64 mipsel  # these (built by scripts/cross.sh if missing)
#
# Output: $CARGO_TARGET_DIR/ipk/mpbridge_<version>-<release>_<openwrt arch>.ipk
# Install on the router: opkg install /tmp/mpbridge_*.ipk
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/ipk"
files="$root/openwrt/mpbridge/files"
makefile="$root/openwrt/mpbridge/Makefile"

field() { sed -n "s/^$1:=//p" "$makefile"; }
version="$(field PKG_VERSION)-$(field PKG_RELEASE)"
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [ "$(field PKG_VERSION)" != "$cargo_version" ]; then
    echo "ipk: openwrt/mpbridge/Makefile has PKG_VERSION $(field PKG_VERSION), Cargo.toml $cargo_version" >&2
    exit 1
fi
# The package's dependencies, as in the Makefile's DEPENDS (kernel modules).
depends="kmod-nft-tproxy, kmod-nft-socket, kmod-nft-fib, kmod-nft-nat"
# Reproducible: every file's time is the last commit's.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)

declare -A rust_target=(
    [aarch64]=aarch64-unknown-linux-musl
    [armv7]=armv7-unknown-linux-musleabihf
    [mipsel]=mipsel-unknown-linux-musl
    [x86_64]=x86_64-unknown-linux-musl
)
declare -A openwrt_arch=(
    [aarch64]=aarch64_cortex-a53
    [armv7]=arm_cortex-a7_neon-vfpv4
    [mipsel]=mipsel_24kc
    [x86_64]=x86_64
)

arches=("$@")
if [ "${#arches[@]}" -eq 0 ]; then
    for a in aarch64 armv7 mipsel x86_64; do
        [ -x "$target_dir/cross/${rust_target[$a]}/router/mpbridge" ] && arches+=("$a")
    done
    [ "${#arches[@]}" -gt 0 ] || { echo "ipk: no binaries; run scripts/cross.sh first" >&2; exit 1; }
fi

# A tar as opkg expects it: ./-prefixed names, root-owned, fixed times.
pack() { # dir → tar.gz on stdout
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
        -C "$1" -cf - . | gzip -n -9
}

mkdir -p "$out"
for a in "${arches[@]}"; do
    [ -n "${rust_target[$a]:-}" ] || { echo "ipk: unknown arch $a" >&2; exit 1; }
    bin="$target_dir/cross/${rust_target[$a]}/router/mpbridge"
    [ -x "$bin" ] || scripts/cross.sh "$a"
    arch=${openwrt_arch[$a]}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    data="$work/data"
    control="$work/control"
    install -d -m 0755 "$data/usr/bin" "$data/etc/init.d" "$data/etc/config" \
        "$data/usr/share/mpbridge" "$control"
    install -d -m 0700 "$data/etc/mpbridge"
    install -m 0755 "$bin" "$data/usr/bin/mpbridge"
    install -m 0755 "$files/mpbridge.init" "$data/etc/init.d/mpbridge"
    install -m 0600 "$files/mpbridge.config" "$data/etc/config/mpbridge"
    install -m 0644 "$files/fw4-include.nft" "$data/usr/share/mpbridge/fw4-include.nft"
    size=$(du -sb "$data" | cut -f1)
    cat > "$control/control" <<EOF
Package: mpbridge
Version: $version
Depends: $depends
Source: openwrt/mpbridge
SourceName: mpbridge
License: MIT OR Apache-2.0
Section: net
Architecture: $arch
Installed-Size: $size
Description: Bridge every TCP connection over all links between two routers (MPTCP)
EOF
    printf '/etc/config/mpbridge\n' > "$control/conffiles"
    cat > "$control/postinst" <<'EOF'
#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] || /etc/init.d/mpbridge enable
exit 0
EOF
    cat > "$control/prerm" <<'EOF'
#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] || { /etc/init.d/mpbridge stop; /etc/init.d/mpbridge disable; }
exit 0
EOF
    chmod 0644 "$control/control" "$control/conffiles"
    chmod 0755 "$control/postinst" "$control/prerm"
    mkdir "$work/ipk"
    echo "2.0" > "$work/ipk/debian-binary"
    pack "$control" > "$work/ipk/control.tar.gz"
    pack "$data" > "$work/ipk/data.tar.gz"
    ipk="$out/mpbridge_${version}_${arch}.ipk"
    tar --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$work/ipk" \
        -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n -9 > "$ipk"
    rm -rf "$work"
    trap - EXIT
    printf 'ipk: %s (%d bytes)\n' "$ipk" "$(stat -c %s "$ipk")"
done
