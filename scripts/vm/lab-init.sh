#!/bin/sh
# PID 1 of the x86_64 VM that scripts/vm-lab.sh boots (busybox sh): loads
# the modules, mounts the host's root file system (9p, read-only) at /host
# and the writable share at /share, mounts proc, sys, dev, /run and /tmp
# inside /host, binds the share at its host path there, runs the command
# vm-lab.sh wrote (.vm-lab/run) with the host's bash chroot'ed into /host,
# writes its exit status to .vm-lab/rc and powers off.
# shellcheck shell=dash
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

die() {
    echo "vm-lab guest: $*"
    dmesg | tail -n 20
    sync
    poweroff -f
}

# mac80211_hwsim makes two radios by default; the Wi-Fi lab needs four
# (two links, an access point and a station each).
while read -r ko; do
    case $ko in
        */mac80211_hwsim.ko) args=radios=4 ;;
        *) args= ;;
    esac
    # shellcheck disable=SC2086 # no argument, or one
    insmod "$ko" $args 2>/dev/null || echo "vm-lab guest: cannot load $ko"
done < /etc/modules.order

opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,ro,cache=loose" hostroot /host || die "cannot mount the host's root file system"
mount -t 9p -o "$opts" results /share || die "cannot mount the results share"
path=$(cat /share/.vm-lab/path) || die "no .vm-lab/path in the share"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs shm /host/dev/shm
mount -t tmpfs run /host/run
mount -t tmpfs tmp /host/tmp
# The share's host path exists on the host's (read-only) root unless it is
# under /tmp or /run, which are fresh tmpfs here.
mkdir -p "/host$path" 2>/dev/null
mount -o bind /share "/host$path" || die "cannot bind the share at $path"
echo 1 > /proc/sys/net/mptcp/enabled 2>/dev/null

chroot /host /bin/bash "$path/.vm-lab/run"
echo $? > /share/.vm-lab/rc
echo 0 > /proc/sys/kernel/printk
sync
poweroff -f
