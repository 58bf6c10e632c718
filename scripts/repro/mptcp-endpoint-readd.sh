#!/usr/bin/env bash
# A reproduction, without mpbridge, of a connection that loses a link for
# good when the in-kernel path manager's endpoint for the address of its
# initial subflow is removed and added again at once (for an upstream
# report). Two network namespaces joined by two veth pairs; the client has
# one "subflow" endpoint per link and limits of 2 subflows on both ends;
# a Python server on an IPPROTO_MPTCP socket sends to the client without
# end. Each round removes link 0's endpoint (the initial subflow's
# address; `-z` also deletes "id 0" for it, as mpbridge did) and adds it
# again after WAIT ms, then looks, a second later, whether the connection
# has an established subflow from link 0's address again. With WAIT 0 the
# join made for the re-added endpoint carries local id 0 (the kernel takes
# the new endpoint as the initial subflow's, mpc_endpoint_id), and the
# server, acting later on the RM_ADDR id 0 that the removal sent, may
# close it, or refuse it while it still counts the old subflow; the client's
# path manager never tries again. A round that ends so is counted as lost,
# with both ends' `ip mptcp monitor` events and MPTCP counters, and the
# next round starts from there (the endpoint's removal marks it usable again).
# As root; everything is removed at exit.
#
#   scripts/repro/mptcp-endpoint-readd.sh [-n ROUNDS] [-w WAIT_MS] [-z]
#   scripts/repro/mptcp-endpoint-readd.sh -n 50 -z          # back to back
#   scripts/repro/mptcp-endpoint-readd.sh -n 50 -z -w 500   # held 500 ms
set -euo pipefail
rounds=30 wait_ms=0 id0=''
while getopts n:w:z o; do
    case $o in
        n) rounds=$OPTARG ;;
        w) wait_ms=$OPTARG ;;
        z) id0=1 ;;
        *) sed -n '2,23p' "$0"; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
a=mpreadd-a-$$ b=mpreadd-b-$$
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0
    ip -n "$ns" mptcp limits set subflows 2 add_addr_accepted 2
done
for i in 0 1; do
    ip link add "a$i" netns "$a" type veth peer name "b$i" netns "$b"
    ip -n "$a" addr add "10.9.$i.1/24" dev "a$i"
    ip -n "$b" addr add "10.9.$i.2/24" dev "b$i"
    ip -n "$a" link set "a$i" up
    ip -n "$b" link set "b$i" up
    # Each source address leaves by its own link, to the server's address
    # on link 0 (the one every subflow connects to).
    ip -n "$a" route add 10.9.0.2/32 dev "a$i" table $((100 + i))
    ip -n "$a" rule add from "10.9.$i.1" table $((100 + i))
done
ip -n "$a" mptcp endpoint add 10.9.0.1 dev a0 subflow
ip -n "$a" mptcp endpoint add 10.9.1.1 dev a1 subflow
sleep 1 # the veth peers pass packets once the link watch has run

ip -n "$a" mptcp monitor >"$tmp/mon-a" & pids+=($!)
ip -n "$b" mptcp monitor >"$tmp/mon-b" & pids+=($!)
ip netns exec "$b" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.9.0.2", 5201)); s.listen(1)
c, _ = s.accept()
buf = bytes(65536)
while True:
    c.sendall(buf)
' & pids+=($!)
sleep 0.5
ip netns exec "$a" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.bind(("10.9.0.1", 0)); s.connect(("10.9.0.2", 5201))
while s.recv(1 << 20):
    pass
' & pids+=($!)

# Established subflows of the connection from link 0's address.
on_link0() {
    ip netns exec "$a" ss -Htn state established src 10.9.0.1 dport = :5201 | wc -l
}
counters() {
    ip netns exec "$1" nstat -az 'MPTcp*' | awk '$2 != 0 { printf "%s=%s ", $1, $2 } END { print "" }'
}
for _ in $(seq 50); do [ "$(on_link0)" = 1 ] && break; sleep 0.1; done
[ "$(on_link0)" = 1 ] || { echo "no initial subflow on link 0" >&2; exit 1; }
sleep 1 # the join on link 1 too
lost=0
for r in $(seq 1 "$rounds"); do
    id=$(ip -n "$a" mptcp endpoint show | awk '$1 == "10.9.0.1" { print $3 }')
    # The removal closes the subflow from 10.9.0.1 and sends RM_ADDR.
    ip -n "$a" mptcp endpoint delete id "$id"
    [ -n "$id0" ] && ip -n "$a" mptcp endpoint delete id 0 10.9.0.1
    [ "$wait_ms" -gt 0 ] && sleep "$(awk -v m="$wait_ms" 'BEGIN { print m / 1000 }')"
    ip -n "$a" mptcp endpoint add 10.9.0.1 dev a0 subflow
    sleep 1
    if [ "$(on_link0)" = 0 ]; then
        lost=$((lost + 1))
        echo "round $r: no subflow on link 0 after the endpoint's return"
        ip netns exec "$a" ss -Mi | sed -n '2,$p'
        echo "  client: $(counters "$a")"
        echo "  server: $(counters "$b")"
        echo "  client events:"; tail -n 4 "$tmp/mon-a" | sed 's/^/    /'
        echo "  server events:"; tail -n 4 "$tmp/mon-b" | sed 's/^/    /'
    fi
done
echo "kernel $(uname -r): $lost of $rounds rounds left the connection without a subflow on link 0 (wait ${wait_ms} ms${id0:+, id 0 deleted too})"
