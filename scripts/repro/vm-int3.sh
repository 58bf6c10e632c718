#!/usr/bin/env bash
# A reproduction of the lab VM's "Oops: int3" (docs/WIFI.md) in seconds
# rather than one boot in fifteen. Run on the host, it runs itself in the
# VM of scripts/vm-lab.sh (VM_ACCEL, VM_SMP and the rest apply); in the VM
# it joins two network namespaces with a veth pair, sends one iperf3 flow
# across for SECS seconds, and meanwhile adds and removes an nftables
# netdev ingress chain on the receiving end in a loop. Each add and remove
# flips the static key that __netif_receive_skb_core tests, which the
# kernel patches (int3 first) while the other vCPU runs that code for the
# flow. The VM either survives (exit 0, the flow's rate and the number of
# flips printed) or panics (vm-lab.sh exits 1 and shows the console).
#
#   scripts/repro/vm-int3.sh [SECS]                          # 60 by default
#   VM_ACCEL=tcg,thread=single scripts/repro/vm-int3.sh 60
set -euo pipefail
secs=${1:-60}
if [ -z "${MPBRIDGE_VM:-}" ]; then
    exec "$(dirname "$0")/../vm-lab.sh" -- bash "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$secs"
fi
a=int3a-$$ b=int3b-$$
ip netns add "$a"
ip netns add "$b"
trap 'ip netns del "$a"; ip netns del "$b"' EXIT
ip link add va netns "$a" type veth peer name vb netns "$b"
ip -n "$a" addr add 10.9.0.1/24 dev va
ip -n "$b" addr add 10.9.0.2/24 dev vb
for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
done
ip -n "$a" link set va up
ip -n "$b" link set vb up
ip netns exec "$b" iperf3 -s -1 -D
sleep 1
ip netns exec "$a" iperf3 -c 10.9.0.2 -t "$secs" -f m > /tmp/int3-iperf.out &
client=$!
end=$(($(date +%s) + secs))
flips=0
while [ "$(date +%s)" -lt "$end" ]; do
    ip netns exec "$b" nft -f - <<'EOF'
table netdev int3 {
    chain in { type filter hook ingress device vb priority 0; }
}
EOF
    ip netns exec "$b" nft delete table netdev int3
    flips=$((flips + 1))
    # Printed as it goes: a panic leaves the count on the console.
    if [ $((flips % 10)) -eq 0 ]; then echo "vm-int3: $flips flips, $(cut -d' ' -f1 /proc/uptime) s since boot"; fi
done
wait "$client"
grep receiver /tmp/int3-iperf.out
echo "vm-int3: the kernel survived $flips adds and removes of the ingress hook in ${secs} s"
