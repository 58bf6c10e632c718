#!/usr/bin/env bash
# The full-system test on a real arm64 kernel: boots Debian's arm64 cloud
# kernel (Linux 6.12, as OpenWrt 25.12 ships) under qemu-system-aarch64
# -M virt -cpu cortex-a53 with an initramfs holding the static aarch64
# mpbridge and busybox, and runs there vm/guest.sh: namespaces for client,
# router A, two veth links, router B and server; both daemons set up the
# MPTCP endpoints, limits, policy routing, probes and the owned nftables
# table (TPROXY) themselves; a transfer survives link 0 failing and uses
# it again once it returns. Exits non-zero when the guest reports failure.
#
# Downloads (apt-get download, arm64) go to $MPBRIDGE_CACHE/vm
# (/var/cache/mpbridge/vm), never into the clone. Needs the aarch64 binary
# of scripts/cross.sh (built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}/vm"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mpbridge="$target_dir/cross/aarch64-unknown-linux-musl/router/mpbridge"
work="$target_dir/vm"
timeout_secs="${VM_TIMEOUT:-900}"
# Debian's Linux 6.12 for arm64 cloud machines: the newest in the archive
# unless KERNEL_PACKAGE names one.
kernel_glob='^linux-image-6\.12\..*-cloud-arm64-unsigned$'

need_apt=()
command -v qemu-system-aarch64 >/dev/null || need_apt+=(qemu-system-arm)
command -v depmod >/dev/null || need_apt+=(kmod)
command -v cpio >/dev/null || need_apt+=(cpio)
command -v xz >/dev/null || need_apt+=(xz-utils)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "vm-test: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "vm-test: dpkg --add-architecture arm64 (to download arm64 packages)"
    dpkg --add-architecture arm64
    apt-get update -qq
fi

mkdir -p "$cache/debs"
kpkg="${KERNEL_PACKAGE:-}"
if [ -z "$kpkg" ]; then
    kpkg=$(find "$cache/debs" -name 'linux-image-6.12.*-cloud-arm64-unsigned_*_arm64.deb' -printf '%f\n' \
        | sed 's/_.*//' | sort -V | tail -n 1)
fi
if [ -z "$kpkg" ]; then
    kpkg=$(apt-cache search --names-only "$kernel_glob" | awk '{print $1}' | sort -V | tail -n 1)
    if [ -z "$kpkg" ]; then
        apt-get update -qq
        kpkg=$(apt-cache search --names-only "$kernel_glob" | awk '{print $1}' | sort -V | tail -n 1)
    fi
    [ -n "$kpkg" ] || { echo "vm-test: no $kernel_glob package in the archive" >&2; exit 1; }
fi
fetch() { # package (arm64) → its .deb in the cache
    local deb
    deb=$(find "$cache/debs" -name "${1}_*_arm64.deb" | head -n 1)
    if [ -z "$deb" ]; then
        (cd "$cache/debs" && apt-get download -qq "$1:arm64")
        deb=$(find "$cache/debs" -name "${1}_*_arm64.deb" | head -n 1)
    fi
    echo "$deb"
}
kdeb=$(fetch "$kpkg")
bbdeb=$(fetch busybox-static)

if [ ! -x "$mpbridge" ]; then
    scripts/cross.sh aarch64
fi

rm -rf "$work"
mkdir -p "$work/kernel" "$work/initramfs"
dpkg-deb -x "$kdeb" "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
vmlinuz="$work/kernel/boot/vmlinuz-$kver"

# The initramfs: busybox, mpbridge, the scenario, and the modules it needs
# (decompressed: 6.12's are .ko.xz, which busybox cannot load) in
# dependency order, with a modules.dep made by depmod -b.
ir="$work/initramfs"
mkdir -p "$ir"/{bin,sbin,etc,proc,sys,dev,tmp,run,root}
dpkg-deb -x "$bbdeb" "$work/busybox"
cp "$work/busybox/bin/busybox" "$ir/bin/busybox"
for applet in sh ash mount umount mkdir cat echo sleep ip insmod modprobe sysctl unshare nsenter \
    nc dd sha256sum grep sed awk kill ls poweroff timeout wc head tail cut tr seq test true false \
    printf date ps cp rm uname sync xargs tee; do
    ln -s busybox "$ir/bin/$applet"
done
install -m 0755 "$mpbridge" "$ir/bin/mpbridge"
install -m 0755 scripts/vm/guest.sh "$ir/init"

modules=(veth nf_tables nft_tproxy nft_socket nft_fib_inet nft_redir nft_nat sch_tbf sch_netem)
depmod -b "$work/kernel" "$kver"
: > "$ir/etc/modules.order"
for m in "${modules[@]}"; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
    rel=${ko#"$work/kernel/"}
    rel=${rel%.xz}
    mkdir -p "$ir/$(dirname "$rel")"
    xz -dc "$ko" > "$ir/$rel"
    echo "/$rel" >> "$ir/etc/modules.order"
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
    cp "$work/kernel/lib/modules/$kver/$f" "$ir/lib/modules/$kver/" 2>/dev/null || : > "$ir/lib/modules/$kver/$f"
done
depmod -b "$ir" "$kver"
echo "vm-test: kernel $kver, $(wc -l < "$ir/etc/modules.order") modules"

(cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 > "$work/initramfs.gz"

prep=$(( $(date +%s) - started ))
echo "vm-test: prepared in ${prep}s; booting (timeout ${timeout_secs}s)"
boot_start=$(date +%s)
log="$work/console.log"
set +e
timeout "$timeout_secs" qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 1024 \
    -nographic -no-reboot -monitor none -serial stdio -nic none \
    -kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4" < /dev/null > "$log" 2>&1
qemu_rc=$?
set -e
took=$(( $(date +%s) - boot_start ))
grep -a '^vm:' "$log" || true
if grep -aq '^MPBRIDGE-VM: PASS' "$log"; then
    echo "vm-test: PASS (guest ${took}s, total $(( $(date +%s) - started ))s)"
    exit 0
fi
echo "vm-test: FAIL (qemu exit $qemu_rc after ${took}s); console log: $log" >&2
tail -n 80 "$log" >&2
exit 1
