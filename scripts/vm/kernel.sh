# shellcheck shell=bash
# Sourced by scripts/vm-test.sh (arm64, armv7, mipsel) and scripts/vm-lab.sh (x86_64): the
# Debian packages a VM boots from, fetched with `apt-get download` into a
# cache outside the clone, and an initramfs's kernel modules. Callers set
# `set -euo pipefail` and define vm_name (the prefix of every message).
: "${vm_name:=vm}"

# vm_apt_update: `apt-get update`, tried three times 20 s apart. A mirror
# caught mid-sync fails one index ("File has unexpected size ... Mirror sync
# in progress?", seen for bookworm-security's armhf list on a fresh
# machine); once it still fails, the indexes that did arrive are used, and
# a package they lack is then named by whoever looks for it.
vm_apt_update() {
    local try
    for try in 1 2 3; do
        apt-get update -qq && return 0
        [ "$try" = 3 ] || { echo "$vm_name: apt-get update failed; again in 20 s" >&2; sleep 20; }
    done
    echo "$vm_name: apt-get update failed three times; going on with the indexes that arrived" >&2
}

# vm_need_tools COMMAND:PACKAGE...: installs the Debian packages of the
# commands that are missing.
vm_need_tools() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        echo "$vm_name: installing ${need[*]}"
        vm_apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# vm_kernel_package DEBS ARCH REGEX: the name of the kernel package to
# boot: $KERNEL_PACKAGE, else the newest matching one already in DEBS, else
# the newest in the archive.
vm_kernel_package() {
    local debs=$1 arch=$2 regex=$3 pkg=${KERNEL_PACKAGE:-}
    if [ -z "$pkg" ]; then
        pkg=$(find "$debs" -name "linux-image-*_${arch}.deb" -printf '%f\n' | sed 's/_.*//' \
            | grep -E "$regex" | sort -V | tail -n 1 || true)
    fi
    if [ -z "$pkg" ]; then
        pkg=$(apt-cache search --names-only "$regex" | awk '{print $1}' | sort -V | tail -n 1)
        if [ -z "$pkg" ]; then
            vm_apt_update
            pkg=$(apt-cache search --names-only "$regex" | awk '{print $1}' | sort -V | tail -n 1)
        fi
    fi
    if [ -z "$pkg" ]; then
        echo "$vm_name: no package matching $regex in the archive (apt-get update, and check /etc/apt/sources.list)" >&2
        return 1
    fi
    echo "$pkg"
}

# vm_fetch DEBS ARCH PACKAGE: prints the path of PACKAGE's .deb in DEBS,
# downloading it first when it is not there.
vm_fetch() {
    local debs=$1 arch=$2 pkg=$3 deb
    deb=$(find "$debs" -name "${pkg}_*_${arch}.deb" | head -n 1)
    if [ -z "$deb" ]; then
        echo "$vm_name: downloading $pkg ($arch) into $debs" >&2
        if ! (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:$arch" >&2); then
            echo "$vm_name: cannot download $pkg:$arch from Debian's mirrors (apt-get download failed; is the network or the mirror down?)" >&2
            return 1
        fi
        deb=$(find "$debs" -name "${pkg}_*_${arch}.deb" | head -n 1)
    fi
    [ -n "$deb" ] || { echo "$vm_name: $pkg:$arch downloaded but no .deb found in $debs" >&2; return 1; }
    echo "$deb"
}

# vm_busybox INITRAMFS BUSYBOX_DEB APPLET...: the static busybox of the deb
# as INITRAMFS/bin/busybox with a link per applet.
vm_busybox() {
    local ir=$1 deb=$2 tmp applet
    shift 2
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    mkdir -p "$ir/bin"
    cp "$tmp/bin/busybox" "$ir/bin/busybox"
    rm -rf "$tmp"
    for applet in "$@"; do
        ln -sf busybox "$ir/bin/$applet"
    done
}

# vm_modules KERNEL_ROOT KVER INITRAMFS MODULE...: the MODULEs and what they
# depend on, decompressed (6.12's are .ko.xz, which busybox's insmod cannot
# load; 6.1's are plain .ko), into INITRAMFS, listed in load order in INITRAMFS/etc/modules.order
# (absolute paths inside the VM), with a modules.dep made by depmod -b.
# Modules built into the kernel are left out.
vm_modules() {
    local kroot=$1 kver=$2 ir=$3 m ko rel f
    shift 3
    depmod -b "$kroot" "$kver"
    mkdir -p "$ir/etc"
    : > "$ir/etc/modules.order"
    for m in "$@"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
    done | awk '!seen[$0]++' | while read -r ko; do
        rel=${ko#"$kroot/"}
        rel=${rel%.xz}
        mkdir -p "$ir/$(dirname "$rel")"
        case $ko in
            *.xz) xz -dc "$ko" > "$ir/$rel" ;;
            *) cp "$ko" "$ir/$rel" ;; # Debian's 6.1 ships them uncompressed
        esac
        echo "/$rel" >> "$ir/etc/modules.order"
    done
    mkdir -p "$ir/lib/modules/$kver"
    for f in modules.builtin modules.builtin.modinfo modules.order; do
        cp "$kroot/lib/modules/$kver/$f" "$ir/lib/modules/$kver/" 2>/dev/null || : > "$ir/lib/modules/$kver/$f"
    done
    depmod -b "$ir" "$kver"
}

# vm_cpio INITRAMFS OUT: INITRAMFS packed as a gzip'd newc cpio at OUT.
vm_cpio() {
    (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 > "$2"
}
