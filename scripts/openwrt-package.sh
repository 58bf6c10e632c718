# shellcheck shell=bash disable=SC2034,SC2154
# Sourced by scripts/ipk.sh and scripts/apk.sh (not run alone): what the
# side-loadable OpenWrt packages hold, laid out as the OpenWrt SDK would
# install it from openwrt/mpbridge/Makefile, and which binary of
# scripts/cross.sh each OpenWrt package architecture takes.
#
# Expects: root (the clone), target_dir. Sets: files, makefile, pkg_version,
# pkg_release, depends, conffiles, epoch, openwrt_arches, binary_of,
# rust_target_of.

files="$root/openwrt/mpbridge/files"
makefile="$root/openwrt/mpbridge/Makefile"

makefile_field() { sed -n "s/^$1:=//p" "$makefile"; }
pkg_version=$(makefile_field PKG_VERSION)
pkg_release=$(makefile_field PKG_RELEASE)
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
if [ "$pkg_version" != "$cargo_version" ]; then
    echo "openwrt/mpbridge/Makefile has PKG_VERSION $pkg_version, Cargo.toml $cargo_version" >&2
    exit 1
fi
# The package's dependencies: the Makefile's DEPENDS without the build
# conditions (@...) and the Rust architecture list.
mapfile -t depends < <(sed -n '/^define Package\/mpbridge$/,/^endef/p' "$makefile" \
    | grep -o '+[a-z0-9-]*' | tr -d +)
# Package/mpbridge/conffiles of the Makefile, one path a line.
mapfile -t conffiles < <(sed -n '/^define Package\/mpbridge\/conffiles$/,/^endef/p' "$makefile" \
    | grep '^/')
# Reproducible: every file's time is the last commit's.
epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)

# OpenWrt package architecture (`apk --print-arch`, `opkg
# print-architecture`) → the binary of scripts/cross.sh that runs there.
openwrt_arches=(
    aarch64_cortex-a53 aarch64_cortex-a72 aarch64_generic
    arm_cortex-a7_neon-vfpv4 arm_cortex-a15_neon-vfpv4
    mips_24kc mipsel_24kc x86_64
)
declare -A binary_of=(
    [aarch64_cortex-a53]=aarch64 [aarch64_cortex-a72]=aarch64 [aarch64_generic]=aarch64
    [arm_cortex-a7_neon-vfpv4]=armv7 [arm_cortex-a15_neon-vfpv4]=armv7
    [mips_24kc]=mips [mipsel_24kc]=mipsel [x86_64]=x86_64
)
declare -A rust_target_of=(
    [aarch64]=aarch64-unknown-linux-musl
    [armv7]=armv7-unknown-linux-musleabihf
    [mips]=mips-unknown-linux-musl
    [mipsel]=mipsel-unknown-linux-musl
    [x86_64]=x86_64-unknown-linux-musl
)

binary_path() { # short name → the cross-built binary
    echo "$target_dir/cross/${rust_target_of[$1]}/router/mpbridge"
}

# The OpenWrt architectures to pack for the arguments (short names of
# scripts/cross.sh or OpenWrt architectures); without arguments, every one
# whose binary exists. Prints one a line.
select_arches() {
    local a o
    if [ "$#" -eq 0 ]; then
        for o in "${openwrt_arches[@]}"; do
            [ -x "$(binary_path "${binary_of[$o]}")" ] && echo "$o"
        done
        return 0
    fi
    for a in "$@"; do
        if [ -n "${binary_of[$a]:-}" ]; then
            echo "$a"
        elif [ -n "${rust_target_of[$a]:-}" ]; then
            for o in "${openwrt_arches[@]}"; do
                [ "${binary_of[$o]}" = "$a" ] && echo "$o"
            done
        else
            echo "unknown architecture $a (${!rust_target_of[*]}, or one of ${openwrt_arches[*]})" >&2
            return 1
        fi
    done
}

# Installs the package's files under $1 for OpenWrt architecture $2, as
# Package/mpbridge/install does, plus /lib/upgrade/keep.d/mpbridge for the
# conffiles the package does not ship (the key), as the SDK adds it.
stage_files() {
    local data="$1" arch="$2" bin c keep=()
    bin=$(binary_path "${binary_of[$arch]}")
    [ -x "$bin" ] || scripts/cross.sh "${binary_of[$arch]}"
    install -d -m 0755 "$data/usr/bin" "$data/etc/init.d" "$data/etc/config" \
        "$data/etc/sysctl.d" "$data/usr/share/mpbridge"
    install -d -m 0700 "$data/etc/mpbridge"
    install -m 0755 "$bin" "$data/usr/bin/mpbridge"
    install -m 0755 "$files/mpbridge.init" "$data/etc/init.d/mpbridge"
    install -m 0600 "$files/mpbridge.config" "$data/etc/config/mpbridge"
    install -m 0644 "$files/mpbridge.sysctl" "$data/etc/sysctl.d/90-mpbridge.conf"
    install -m 0644 "$files/fw4-include.nft" "$data/usr/share/mpbridge/fw4-include.nft"
    for c in "${conffiles[@]}"; do
        [ -f "$data$c" ] || keep+=("$c")
    done
    if [ "${#keep[@]}" -gt 0 ]; then
        install -d -m 0755 "$data/lib/upgrade/keep.d"
        printf '%s\n' "${keep[@]}" > "$data/lib/upgrade/keep.d/mpbridge"
        chmod 0644 "$data/lib/upgrade/keep.d/mpbridge"
    fi
}

# Sets every file's time to the last commit's.
fix_times() {
    find "$1" -exec touch -h -d "@$epoch" {} +
}
