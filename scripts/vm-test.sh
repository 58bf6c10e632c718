#!/usr/bin/env bash
# The full-system test on a real kernel of each router CPU class: boots a
# Debian kernel under qemu-system with an initramfs holding the static
# mpbridge and busybox of that architecture, and runs there vm/guest.sh:
# namespaces for client, router A, two veth links, router B and server;
# both daemons set up the MPTCP endpoints, limits, policy routing, probes
# and the owned nftables table (TPROXY) themselves; a SHA-256-checked
# transfer survives link 0 failing and uses it again once it returns; on a
# kernel before 6.2 both daemons must report TCP Fast Open on MPTCP as lost
# (and on a newer one report nothing lost). Exits non-zero when the guest
# reports failure.
#
#   scripts/vm-test.sh [arm64]   # Linux 6.12 (trixie's, as OpenWrt 25.12),
#                                # -M virt -cpu cortex-a53, 24 MB moved
#   scripts/vm-test.sh armv7     # Linux 6.1 armmp-lpae (bookworm), -M virt
#                                # -cpu cortex-a15, 16 MB moved
#   scripts/vm-test.sh mipsel    # Linux 6.1 4kc-malta (bookworm), -M malta
#                                # (one 24Kc CPU, slowest under TCG), 8 MB
#
# Downloads (apt-get download of the foreign architecture, added to dpkg
# when missing) go to $MPBRIDGE_CACHE/vm (/var/cache/mpbridge/vm), never
# into the clone. Needs the binary of scripts/cross.sh (built here when
# missing). KERNEL_PACKAGE names another kernel package of the same flavour.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)
arch=${1:-arm64}
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}/vm"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$target_dir/vm-$arch"
timeout_secs="${VM_TIMEOUT:-900}"
case $arch in
    arm64)
        deb_arch=arm64 cross=aarch64 rust=aarch64-unknown-linux-musl mb=24
        # Debian's Linux 6.12 for arm64 cloud machines.
        kernel_glob='^linux-image-6\.12\..*-cloud-arm64-unsigned$'
        qemu=(qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 1024)
        qemu_tool=qemu-system-aarch64:qemu-system-arm console=ttyAMA0
        ;;
    armv7)
        deb_arch=armhf cross=armv7 rust=armv7-unknown-linux-musleabihf mb=16
        # bookworm's Linux 6.1 for ARMv7 with LPAE (-M virt's cortex-a15).
        kernel_glob='^linux-image-6\.1\.0-.*-armmp-lpae$'
        qemu=(qemu-system-arm -M "virt,highmem=off" -cpu cortex-a15 -smp 2 -m 512)
        qemu_tool=qemu-system-arm:qemu-system-arm console=ttyAMA0
        ;;
    mipsel)
        deb_arch=mipsel cross=mipsel rust=mipsel-unknown-linux-musl mb=8
        # bookworm's Linux 6.1 for the MIPS Malta board: MT7621's 24Kc class.
        kernel_glob='^linux-image-6\.1\.0-.*-4kc-malta$'
        qemu=(qemu-system-mipsel -M malta -cpu 24Kc -m 256)
        qemu_tool=qemu-system-mipsel:qemu-system-mips console=ttyS0
        ;;
    *)
        echo "vm-test: unknown architecture $arch (arm64, armv7, mipsel)" >&2
        exit 2
        ;;
esac
mpbridge="$target_dir/cross/$rust/router/mpbridge"

vm_name="vm-test $arch"
# shellcheck source=scripts/vm/kernel.sh
. scripts/vm/kernel.sh
vm_need_tools "$qemu_tool" depmod:kmod cpio:cpio xz:xz-utils
if [ "$(dpkg --print-architecture)" != "$deb_arch" ] \
    && ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
    echo "$vm_name: dpkg --add-architecture $deb_arch (to download $deb_arch packages)"
    dpkg --add-architecture "$deb_arch"
    vm_apt_update
fi

mkdir -p "$cache/debs"
kpkg=$(vm_kernel_package "$cache/debs" "$deb_arch" "$kernel_glob")
kdeb=$(vm_fetch "$cache/debs" "$deb_arch" "$kpkg")
bbdeb=$(vm_fetch "$cache/debs" "$deb_arch" busybox-static)

if [ ! -x "$mpbridge" ]; then
    scripts/cross.sh "$cross"
fi
connhold="$target_dir/cross/$rust/release/connhold"
if [ ! -x "$connhold" ]; then
    scripts/cross.sh --connhold "$cross"
fi

rm -rf "$work"
mkdir -p "$work/kernel" "$work/initramfs"
dpkg-deb -x "$kdeb" "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
vmlinuz="$work/kernel/boot/vmlinuz-$kver"

# The initramfs: busybox, mpbridge, the scenario, and the modules it needs
# (decompressed: 6.12's are .ko.xz, which busybox cannot load) in
# dependency order, with a modules.dep made by depmod -b. Malta's image is
# an ELF vmlinuz that qemu loads as it is.
ir="$work/initramfs"
mkdir -p "$ir"/{bin,sbin,etc,proc,sys,dev,tmp,run,root}
vm_busybox "$ir" "$bbdeb" sh ash mount umount mkdir cat echo sleep ip insmod modprobe sysctl unshare \
    nsenter nc dd sha256sum grep sed awk kill ls poweroff timeout wc head tail cut tr seq test true \
    false printf date ps cp rm uname sync xargs tee
install -m 0755 "$mpbridge" "$ir/bin/mpbridge"
install -m 0755 "$connhold" "$ir/bin/connhold"
install -m 0755 scripts/vm/guest.sh "$ir/init"
vm_modules "$work/kernel" "$kver" "$ir" veth nf_tables nft_tproxy nft_socket nft_fib_inet nft_redir \
    nft_nat sch_tbf sch_netem
echo "$vm_name: kernel $kver, $(wc -l < "$ir/etc/modules.order") modules"

vm_cpio "$ir" "$work/initramfs.gz"

prep=$(( $(date +%s) - started ))
echo "$vm_name: prepared in ${prep}s; booting (timeout ${timeout_secs}s)"
boot_start=$(date +%s)
log="$work/console.log"
set +e
# MPBRIDGE_MB=N on the command line reaches the guest's init as a
# variable: how many MB to move.
timeout "$timeout_secs" "${qemu[@]}" \
    -nographic -no-reboot -monitor none -serial stdio -nic none \
    -kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
    -append "console=$console rdinit=/init panic=-1 loglevel=4 MPBRIDGE_MB=$mb" < /dev/null > "$log" 2>&1
qemu_rc=$?
set -e
took=$(( $(date +%s) - boot_start ))
grep -a '^vm:' "$log" || true
if grep -aq '^MPBRIDGE-VM: PASS' "$log"; then
    echo "$vm_name: PASS (guest ${took}s, total $(( $(date +%s) - started ))s)"
    exit 0
fi
echo "$vm_name: FAIL (qemu exit $qemu_rc after ${took}s); console log: $log" >&2
tail -n 80 "$log" >&2
exit 1
