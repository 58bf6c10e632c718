#!/usr/bin/env bash
# Runs one command as root inside a full-system x86_64 VM: Debian's generic
# Linux 6.12 (linux-image-6.12.*-amd64-unsigned, the kernel OpenWrt 25.12
# runs, with netem and mac80211_hwsim) under qemu-system-x86_64 with TCG.
# This machine's root file system is shared read-only over virtio-9p and
# chroot'ed into, so the very same binaries (mpbridge-lab, mpbridge, iperf3,
# ip, tc, nft) run inside; DIR (--share, default a fresh temporary folder)
# is shared writable at the same path, for the results. The command runs in
# the current directory (--cwd to change) and its exit status is this
# script's. `mpbridge-lab run` calls this itself for scenarios that need
# netem; by hand:
#
#   scripts/vm-lab.sh -- tc qdisc add dev lo root netem delay 5ms
#
# Downloads (apt-get download: the kernel and busybox-static) are cached in
# $MPBRIDGE_CACHE/vm-lab (/var/cache/mpbridge/vm-lab), the initramfs too.
# VM_ACCEL=kvm uses KVM where it works (on these machines it does not);
# VM_ACCEL=tcg,thread=single runs both vCPUs on one host thread, which
# avoids the int3 Oops below at half the VM's CPU; VM_TIMEOUT (default
# 1800 s) bounds the VM's life; VM_MODULES adds modules; VM_SMP (default 2)
# sets the vCPUs (1 avoids the Oops too, at the same cost; too little CPU
# for the Wi-Fi scenario, see docs/WIFI.md); VM_APPEND adds to the guest
# kernel's command line (e.g. kprobe_event=... to trace the boot).
# RUST_LOG is passed on to the command (the daemons' log levels).
set -euo pipefail
vm_name=vm-lab
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/vm/kernel.sh
. "$here/vm/kernel.sh"

usage() {
    echo "usage: $0 [--share DIR] [--cwd DIR] -- COMMAND [ARG...]" >&2
    exit 2
}
share='' cwd=$PWD
while [ $# -gt 0 ]; do
    case $1 in
        --share) share=${2:?}; shift 2 ;;
        --cwd) cwd=${2:?}; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ $# -gt 0 ] || usage
[ "$(id -u)" = 0 ] || { echo "$vm_name: run as root (qemu shares / as root)" >&2; exit 1; }

started=$(date +%s)
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}/vm-lab"
kernel_regex='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
# What the lab and the daemons load: veth, the sockets' diagnostics (`ss
# -t` and `ss -M`, with which the lab sees which link carries a download),
# qdiscs (netem, tbf, fq, …), clsact with u32 and mirred (the lab's black hole),
# nftables with TPROXY, and the 9p file systems the VM mounts; for Wi-Fi
# links mac80211_hwsim (four radios: the init loads it with radios=4), a
# bridge for the access points' 4-address stations, and the ciphers WPA2
# needs (without them hostapd says "key addition failed").
modules=(netfs 9pnet 9pnet_virtio 9p veth inet_diag tcp_diag mptcp_diag
    sch_netem sch_tbf sch_fq sch_fq_codel sch_prio sch_htb sch_pie sch_cake
    sch_ingress cls_u32 act_mirred
    nf_tables nft_tproxy nft_socket nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_redir nft_nat
    nft_ct nft_chain_nat nft_masq nft_reject_inet nft_limit nft_numgen
    tcp_bbr cfg80211 mac80211 mac80211_hwsim bridge
    ccm gcm cmac ctr gf128mul cryptd crypto_simd aesni_intel)
read -ra extra_modules <<< "${VM_MODULES:-}"
modules+=("${extra_modules[@]}")

vm_need_tools qemu-system-x86_64:qemu-system-x86 depmod:kmod modprobe:kmod cpio:cpio xz:xz-utils
mkdir -p "$cache/debs"
# One preparation at a time (runs may start together); the VM itself needs
# no lock once qemu has read the kernel and initramfs.
exec 9> "$cache/.lock"
flock 9
kpkg=$(vm_kernel_package "$cache/debs" amd64 "$kernel_regex")
kdeb=$(vm_fetch "$cache/debs" amd64 "$kpkg")
bbdeb=$(vm_fetch "$cache/debs" amd64 busybox-static)

# The kernel and initramfs, rebuilt when the packages, the module list or
# the guest's init change.
key=$( { basename "$kdeb"; basename "$bbdeb"; echo "${modules[*]}"; cat "$here/vm/lab-init.sh" "$here/vm/kernel.sh"; } \
    | sha256sum | cut -c1-16)
boot="$cache/boot-$key"
if [ ! -f "$boot/initramfs.gz" ]; then
    echo "$vm_name: building the initramfs ($kpkg, busybox, ${#modules[@]} modules and their dependencies)" >&2
    # Earlier builds stay a day: a run started before may still boot one.
    find "$cache" -maxdepth 1 -name 'boot-*' -mtime +1 -exec rm -rf {} +
    tmp="$cache/boot.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp/kernel" "$tmp/ir"
    dpkg-deb -x "$kdeb" "$tmp/kernel"
    kver=$(ls "$tmp/kernel/lib/modules")
    ir="$tmp/ir"
    mkdir -p "$ir"/{etc,proc,sys,dev,tmp,run,host,share}
    vm_busybox "$ir" "$bbdeb" sh mount umount mkdir cat echo sleep insmod chroot poweroff sync \
        ls ln dmesg grep tail
    install -m 0755 "$here/vm/lab-init.sh" "$ir/init"
    vm_modules "$tmp/kernel" "$kver" "$ir" "${modules[@]}"
    mkdir -p "$tmp/out"
    cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
    vm_cpio "$ir" "$tmp/out/initramfs.gz"
    echo "$kver" > "$tmp/out/kver"
    rm -rf "$boot"
    mv "$tmp/out" "$boot"
    rm -rf "$tmp"
fi
touch "$boot"

exec 9>&-

own_share=
if [ -z "$share" ]; then
    share=$(mktemp -d /tmp/mpbridge-vm-lab.XXXXXX)
    own_share=1
fi
share=$(cd "$share" && pwd)
ctl="$share/.vm-lab"
rm -rf "$ctl"
mkdir -p "$ctl"
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    rm -rf "$ctl"
    if [ -n "$own_share" ]; then rm -rf "$share"; fi
}
trap cleanup EXIT
# What the guest's init reads: where to mount the share, and the command
# (run by the host's bash inside the chroot).
echo "$share" > "$ctl/path"
{
    # Written first: the command was reached, the guest kernel booted.
    echo ": > $(printf '%q' "$ctl/started")"
    echo "cd $(printf '%q' "$cwd") || exit 1"
    echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root"
    echo "export MPBRIDGE_VM=1 TERM=$(printf '%q' "${TERM:-dumb}")"
    # The daemons' log levels per module, as on the host.
    if [ -n "${RUST_LOG:-}" ]; then echo "export RUST_LOG=$(printf '%q' "$RUST_LOG")"; fi
    # Netfilter's hooks each have a static key, on while any namespace has
    # a chain there: the lab's tables come and go with every subject and
    # fault, and each flip under traffic risks the int3 Oops below (seen
    # in ip_rcv). Empty chains in the VM's own namespace hold them on.
    echo "command -v nft >/dev/null && nft -f - <<'NFT' || echo 'vm-lab: netfilter hooks not held on' >&2"
    echo "table inet vmlab_keys {"
    for hook in prerouting input forward output postrouting; do
        echo "  chain $hook { type filter hook $hook priority 0; }"
    done
    echo "}"
    echo "NFT"
    # The command's output goes to the VM's console; when this script's
    # stderr is no terminal, through a pipe, so the command does not draw
    # progress lines for one.
    printf '%q ' "$@"
    # shellcheck disable=SC2016 # expanded by the guest's bash
    if [ -t 2 ]; then echo; else echo '2>&1 | cat; exit "${PIPESTATUS[0]}"'; fi
} > "$ctl/run"

# Debian's 6.12 under TCG with two vCPUs sometimes dies at boot, about
# 1.3 s in, before any of the command runs: "Oops: int3" in a function
# whose static branch the kernel was patching as the other vCPU ran it
# (sched_clock_cpu, run_timer_softirq; 2 boots of 28 on 2026-12-05, under
# load; 0 of 43 on a quiet machine). Those two keys are flipped at 1.10 s
# (timer_update_keys) and 1.48 s (sched_clock_init_late) of a boot. The
# same Oops comes at run time when a static key flips under traffic
# (scripts/repro/vm-int3.sh makes it in seconds), and the faulting code
# already holds the patched instruction: the other vCPU ran a stale
# translation of the int3, which looks like multi-threaded TCG (qemu 7.2)
# rather than the kernel. -accel tcg,thread=single avoids it, at half the
# VM's CPU, so it is not the default. A boot that dies so is the emulated
# guest, not the command: it is tried again, twice at most; a VM that
# reached the command is never run again.
attempt=1
while :; do
    echo "$vm_name: booting Linux $(cat "$boot/kver") under qemu-system-x86_64 (${VM_ACCEL:-tcg}), prepared in $(( $(date +%s) - started ))s" >&2
    rm -f "$ctl/started" "$ctl/rc"
    set +e
    timeout --foreground "${VM_TIMEOUT:-1800}" qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -cpu max -smp "${VM_SMP:-2}" -m 2048 \
        -display none -vga none -no-reboot -monitor none -serial stdio -nic none \
        -fw_cfg name=etc/sercon-port,string=0 \
        -kernel "$boot/vmlinuz" -initrd "$boot/initramfs.gz" \
        -append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3 ${VM_APPEND:-}" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$share,mount_tag=results,security_model=none,multidevs=remap" \
        < /dev/null 2> "$ctl/qemu.log"
    qemu_rc=$?
    set -e
    # 124: the time-out ended it, which a boot crash does not wait for.
    if [ -f "$ctl/rc" ] || [ -f "$ctl/started" ] || [ "$qemu_rc" -eq 124 ] || [ "$attempt" -ge 3 ]; then
        break
    fi
    attempt=$((attempt + 1))
    echo "$vm_name: the guest kernel ended before the command started (qemu exit $qemu_rc); booting again, attempt $attempt of 3" >&2
done
if [ ! -f "$ctl/rc" ]; then
    echo "$vm_name: the VM ended without the command's exit status (qemu exit $qemu_rc after $(( $(date +%s) - started ))s)" >&2
    grep -v 'fw_cfg item names' "$ctl/qemu.log" >&2 || true
    exit 1
fi
rc=$(cat "$ctl/rc")
echo "$vm_name: the command exited with $rc; VM and preparation took $(( $(date +%s) - started ))s" >&2
exit "$rc"
