#!/usr/bin/env bash
# Packs side-loadable OpenWrt 25.12 packages (apk v3, .apk) of the binaries
# of scripts/cross.sh, with `apk mkpkg` of apk-tools 3 as OpenWrt's build
# system does: the files of openwrt/mpbridge/Makefile, the package database
# files OpenWrt adds (/lib/apk/packages/mpbridge.list, .conffiles,
# .conffiles_static) and the build system's default scripts. OpenWrt 24.10
# uses opkg instead: scripts/ipk.sh.
#
#   scripts/apk.sh                        # every arch whose binary exists
#   scripts/apk.sh aarch64 mipsel         # every OpenWrt arch of these binaries
#   scripts/apk.sh aarch64_cortex-a72     # one OpenWrt arch
#
# apk-tools 3 is no Debian package: it is built from its source archive
# (apk-tools-*.tar.gz) in MPBRIDGE_VENDOR (default: ../shared/vendor beside
# the clone), once, into the cache (MPBRIDGE_CACHE, /var/cache/mpbridge),
# with meson (installed with apt if missing). Without that archive the step
# says so and packs nothing (exit 0).
#
# Output: $CARGO_TARGET_DIR/apk/mpbridge-<version>-r<release>_<openwrt arch>.apk
# (unsigned) and $CARGO_TARGET_DIR/apk/apk-tools (the path of the apk binary,
# for the package test). Install on the router:
#   apk add --allow-untrusted /tmp/mpbridge-*.apk
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/apk"
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}"
vendor="${MPBRIDGE_VENDOR:-$root/../shared/vendor}"
# shellcheck source=scripts/openwrt-package.sh
. scripts/openwrt-package.sh
# apk's version format: -r before the release.
version="$pkg_version-r$pkg_release"

tarball=$( (find "$vendor" -maxdepth 1 -name 'apk-tools-*.tar.gz' 2>/dev/null || true) | sort | tail -n 1)
if [ -z "$tarball" ]; then
    echo "apk: SKIPPED: no apk-tools source (apk-tools-*.tar.gz) in $vendor;" \
        "the .apk packages for OpenWrt 25.12 are not built (set MPBRIDGE_VENDOR to a" \
        "folder holding it)" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    # The files' owner goes into the package: root, as under OpenWrt's fakeroot.
    command -v fakeroot >/dev/null || { echo "apk: run as root or install fakeroot" >&2; exit 1; }
    [ -n "${FAKEROOTKEY:-}" ] || exec fakeroot -- "$0" "$@"
fi

mapfile -t arches < <(select_arches "$@")
[ "${#arches[@]}" -gt 0 ] || { echo "apk: no binaries; run scripts/cross.sh first" >&2; exit 1; }

# apk-tools, built once per source archive.
name=$(basename "$tarball" .tar.gz)
apk="$cache/$name/apk"
if ! "$apk" --version >/dev/null 2>&1; then
    need=()
    command -v meson >/dev/null || need+=(meson)
    command -v ninja >/dev/null || need+=(ninja-build)
    command -v pkg-config >/dev/null || need+=(pkg-config)
    dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
    dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
    if [ "${#need[@]}" -gt 0 ]; then
        echo "apk: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
    fi
    echo "apk: building $name into $cache/$name"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    tar -xzf "$tarball" -C "$build"
    src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    meson setup --buildtype=release -Ddefault_library=static -Ddocs=disabled \
        -Dlua=disabled -Dtests=disabled -Dhelp=disabled -Dpython=disabled \
        -Dzstd=disabled -Durl_backend=wget "$build/out" "$src" >"$build/meson.log" 2>&1 \
        || { cat "$build/meson.log" >&2; exit 1; }
    nice -n 10 ninja -C "$build/out" >"$build/ninja.log" 2>&1 \
        || { tail -n 40 "$build/ninja.log" >&2; exit 1; }
    mkdir -p "$cache/$name"
    install -m 0755 "$build/out/src/apk" "$apk.tmp"
    mv "$apk.tmp" "$apk"
    rm -rf "$build"
    trap - EXIT
fi
echo "apk: $("$apk" --version)"
mkdir -p "$out"
echo "$apk" > "$out/apk-tools"

# The scripts OpenWrt's package-pack.mk gives a package without scripts of
# its own: hand over to /lib/functions.sh, which enables and starts the
# service on install, only starts it on upgrade (PKG_UPGRADE=1: a disabled
# service stays disabled), and stops and disables it on removal.
# shellcheck disable=SC2016 # expanded on the router
default_script() { # post-install|post-upgrade|pre-deinstall
    printf '#!/bin/sh\n'
    [ "$1" != post-upgrade ] || printf 'export PKG_UPGRADE=1\n'
    [ "$1" = pre-deinstall ] || printf '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0\n'
    printf '[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0\n'
    printf '. "${IPKG_INSTROOT}/lib/functions.sh"\n'
    printf 'export root="${IPKG_INSTROOT}"\n'
    printf 'export pkgname="mpbridge"\n'
    if [ "$1" = pre-deinstall ]; then
        printf 'default_prerm\n'
    else
        printf 'add_group_and_user\ndefault_postinst\n'
    fi
}

for arch in "${arches[@]}"; do
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    data="$work/data"
    stage_files "$data" "$arch"
    db="$data/lib/apk/packages"
    install -d -m 0755 "$db"
    # Every file and link of the package (default_postinst looks for
    # /etc/init.d/ in it), then its conffiles, with the shipped ones'
    # SHA-256 (sysupgrade keeps those the user changed).
    (cd "$data" && find . \( -type f -o -type l \) -printf '/%P\n' | sort) > "$work/list"
    install -m 0644 "$work/list" "$db/mpbridge.list"
    printf '%s\n' "${conffiles[@]}" > "$db/mpbridge.conffiles"
    : > "$db/mpbridge.conffiles_static"
    for c in "${conffiles[@]}"; do
        [ -f "$data$c" ] || continue
        printf '%s %s\n' "$c" "$(sha256sum "$data$c" | cut -d' ' -f1)" >> "$db/mpbridge.conffiles_static"
    done
    chmod 0644 "$db/mpbridge.conffiles" "$db/mpbridge.conffiles_static"
    for s in post-install post-upgrade pre-deinstall; do
        default_script "$s" > "$work/$s"
    done
    fix_times "$data"
    pkg="$out/mpbridge-${version}_${arch}.apk"
    SOURCE_DATE_EPOCH=$epoch "$apk" mkpkg \
        --info "name:mpbridge" \
        --info "version:$version" \
        --info "description:Bridge every TCP connection over all links between two routers (MPTCP)" \
        --info "arch:$arch" \
        --info "license:MIT OR Apache-2.0" \
        --info "origin:mpbridge" \
        --info "maintainer:mpbridge developers" \
        --info "depends:${depends[*]}" \
        --script "post-install:$work/post-install" \
        --script "post-upgrade:$work/post-upgrade" \
        --script "pre-deinstall:$work/pre-deinstall" \
        --files "$data" \
        --output "$pkg"
    rm -rf "$work"
    trap - EXIT
    printf 'apk: %s (%d bytes)\n' "$pkg" "$(stat -c %s "$pkg")"
done
