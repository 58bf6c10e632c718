#!/usr/bin/env bash
# Packs side-loadable OpenWrt 24.10 packages (.ipk, for opkg) of the
# binaries of scripts/cross.sh, without the OpenWrt SDK: per architecture a
# gzip'd tar of debian-binary, control.tar.gz and data.tar.gz, holding what
# the SDK would build from openwrt/mpbridge/Makefile (the same files, the
# build system's default postinst/prerm). OpenWrt 25.12 uses apk instead:
# scripts/apk.sh.
#
#   scripts/ipk.sh                        # every arch whose binary exists
#   scripts/ipk.sh aarch64 mipsel         # every OpenWrt arch of these binaries
#   scripts/ipk.sh aarch64_cortex-a72     # one OpenWrt arch
#
# Output: $CARGO_TARGET_DIR/ipk/mpbridge_<version>-<release>_<openwrt arch>.ipk
# Install on the router: opkg install /tmp/mpbridge_*.ipk
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/ipk"
# shellcheck source=scripts/openwrt-package.sh
. scripts/openwrt-package.sh
version="$pkg_version-$pkg_release"

mapfile -t arches < <(select_arches "$@")
[ "${#arches[@]}" -gt 0 ] || { echo "ipk: no binaries; run scripts/cross.sh first" >&2; exit 1; }

# A tar as opkg expects it: ./-prefixed names, root-owned, fixed times.
pack() { # dir → tar.gz on stdout
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
        -C "$1" -cf - . | gzip -n -9
}

# What the SDK's package-pack.mk writes for a package without scripts of
# its own: hand over to /lib/functions.sh (enable and start on install,
# start only on upgrade; stop and disable on removal).
# shellcheck disable=SC2016 # expanded on the router
default_script() { # postinst|prerm
    local fn="default_$1"
    printf '#!/bin/sh\n'
    [ "$1" = prerm ] || printf '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
    printf '[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0\n'
    printf '. "${IPKG_INSTROOT}/lib/functions.sh"\n'
    printf '%s "$0" "$@"\n' "$fn"
}

mkdir -p "$out"
for arch in "${arches[@]}"; do
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    data="$work/data"
    control="$work/control"
    stage_files "$data" "$arch"
    install -d -m 0755 "$control"
    size=$(du -sb "$data" | cut -f1)
    dep_list=$(printf '%s, ' "${depends[@]}")
    cat > "$control/control" <<EOF
Package: mpbridge
Version: $version
Depends: ${dep_list%, }
Source: openwrt/mpbridge
SourceName: mpbridge
License: MIT OR Apache-2.0
Section: net
Architecture: $arch
Installed-Size: $size
Description: Bridge every TCP connection over all links between two routers (MPTCP)
EOF
    printf '%s\n' "${conffiles[@]}" > "$control/conffiles"
    default_script postinst > "$control/postinst"
    default_script prerm > "$control/prerm"
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
