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

vm_name=vm-test
# shellcheck source=scripts/vm/kernel.sh
. scripts/vm/kernel.sh
vm_need_tools qemu-system-aarch64:qemu-system-arm depmod:kmod cpio:cpio xz:xz-utils
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "vm-test: dpkg --add-architecture arm64 (to download arm64 packages)"
    dpkg --add-architecture arm64
    apt-get update -qq
fi

mkdir -p "$cache/debs"
kpkg=$(vm_kernel_package "$cache/debs" arm64 "$kernel_glob")
kdeb=$(vm_fetch "$cache/debs" arm64 "$kpkg")
bbdeb=$(vm_fetch "$cache/debs" arm64 busybox-static)

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
vm_busybox "$ir" "$bbdeb" sh ash mount umount mkdir cat echo sleep ip insmod modprobe sysctl unshare \
    nsenter nc dd sha256sum grep sed awk kill ls poweroff timeout wc head tail cut tr seq test true \
    false printf date ps cp rm uname sync xargs tee
install -m 0755 "$mpbridge" "$ir/bin/mpbridge"
install -m 0755 scripts/vm/guest.sh "$ir/init"
vm_modules "$work/kernel" "$kver" "$ir" veth nf_tables nft_tproxy nft_socket nft_fib_inet nft_redir \
    nft_nat sch_tbf sch_netem
echo "vm-test: kernel $kver, $(wc -l < "$ir/etc/modules.order") modules"

vm_cpio "$ir" "$work/initramfs.gz"

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
