#!/usr/bin/env bash
# A reproduction, without mpbridge, of one MPTCP flow over links of
# unequal rates (for an upstream report): two network namespaces joined by
# one veth pair per link, each shaped with tbf on both ends (the lab's
# parameters: burst max(rate/250 s, 64 KiB), latency 20 ms), optionally
# delayed with netem, the in-kernel path manager opening one subflow per
# link from the client's endpoints, and a small Python sender and receiver
# on IPPROTO_MPTCP sockets (no proxy, no TFO, default buffers). It prints
# the goodput against the sum of the links, how the bytes split over the
# links, `ss -tinm` of both ends in the middle of the flow and the MPTCP and
# out-of-order counters that moved. As root; everything is removed at exit.
#
#   scripts/repro/mptcp-unequal.sh [-d up|down] [-t SECS] [-q QDISC] RATE[@DELAY] ...
#   scripts/repro/mptcp-unequal.sh -d down 100 50 20
#   scripts/repro/mptcp-unequal.sh -d up 100@5ms 50@30ms 20@60ms   # needs netem
#
# up: the client (the side that connects) sends; down: the accepting side
# sends (its socket is the passive one). -q adds QDISC (fq, fq_codel) as the
# tbf's child on every link end. Per-socket knobs through the environment:
# SNDBUF=bytes and RCVBUF=bytes set SO_SNDBUF/SO_RCVBUF on both ends;
# CC=cubic (bbr, reno…) sets TCP_CONGESTION on both ends' sockets (a new
# namespace inherits the host's default, and may only make the host's
# allowed ones its default; a socket of a root process may take any).
set -euo pipefail
dir=down secs=10 qdisc=''
while getopts d:t:q: o; do
    case $o in
        d) dir=$OPTARG ;;
        t) secs=$OPTARG ;;
        q) qdisc=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
a=mprepro-a-$$ b=mprepro-b-$$
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0
    ip -n "$ns" mptcp limits set subflows 8 add_addr_accepted 8
done
sum=0
i=0
for spec in "$@"; do
    rate=${spec%%@*} delay=''
    [ "$spec" != "$rate" ] && delay=${spec#*@}
    sum=$((sum + rate))
    ip link add "a$i" netns "$a" type veth peer name "b$i" netns "$b"
    ip -n "$a" addr add "10.9.$i.1/24" dev "a$i"
    ip -n "$b" addr add "10.9.$i.2/24" dev "b$i"
    ip -n "$a" link set "a$i" up
    ip -n "$b" link set "b$i" up
    burst=$(( rate * 1000000 / 8 / 250 )); [ "$burst" -lt 65536 ] && burst=65536
    for end in "$a:a$i" "$b:b$i"; do
        ns=${end%%:*} dev=${end#*:}
        if [ -n "$delay" ]; then
            ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem limit 10000 delay "$delay"
            ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "${rate}mbit" burst "$burst" latency 20ms
            parent=10:1
        else
            ip netns exec "$ns" tc qdisc add dev "$dev" root handle 10: tbf rate "${rate}mbit" burst "$burst" latency 20ms
            parent=10:1
        fi
        if [ -n "$qdisc" ]; then
            ip netns exec "$ns" tc qdisc add dev "$dev" parent "$parent" "$qdisc"
        fi
    done
    if [ "$i" -gt 0 ]; then
        # Subflow i leaves by link i: source routing to the server's first address.
        ip -n "$a" mptcp endpoint add "10.9.$i.1" dev "a$i" subflow
        ip -n "$a" rule add from "10.9.$i.1" table $((100 + i))
        ip -n "$a" route add 10.9.0.2 via "10.9.$i.2" dev "a$i" table $((100 + i))
    fi
    i=$((i + 1))
done
links=$i

py=$(mktemp /tmp/mprepro.XXXXXX.py)
trap 'rm -f "$py"; cleanup' EXIT
cat > "$py" <<'EOF'
import os, socket, sys, time
role, mode, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
IPPROTO_MPTCP = 262
def tune(s):
    if os.environ.get("CC"):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, os.environ["CC"].encode())
    for env, opt in (("SNDBUF", socket.SO_SNDBUF), ("RCVBUF", socket.SO_RCVBUF)):
        if os.environ.get(env):
            s.setsockopt(socket.SOL_SOCKET, opt, int(os.environ[env]))
def pump(s, send):
    buf = bytearray(1 << 20)
    n, start = 0, time.monotonic()
    end = start + secs
    if send:
        while time.monotonic() < end:
            n += s.send(buf)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    else:
        view = memoryview(buf)
        while True:
            k = s.recv_into(view)
            if not k:
                break
            n += k
        print(f"received {n} bytes in {time.monotonic() - start:.2f} s", flush=True)
    s.close()
if role == "server":
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tune(l)
    l.bind(("10.9.0.2", 5555)); l.listen(1)
    print("listening", flush=True)
    c, _ = l.accept()
    tune(c)
    pump(c, mode == "down")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    tune(s)
    s.connect(("10.9.0.2", 5555))
    pump(s, mode == "up")
EOF

counters() { ip netns exec "$1" nstat -asz | awk '/MPTcpExt|OFO|Prune|RcvQDrop|Retrans/ {print $1, $2}'; }
bytes() { # the bytes each of a's links carried in the flow's direction
    local f=rx_bytes; [ "$dir" = up ] && f=tx_bytes
    for j in $(seq 0 $((links - 1))); do ip netns exec "$a" cat "/sys/class/net/a$j/statistics/$f"; done
}
echo "kernel $(uname -r); congestion control ${CC:-$(ip netns exec "$a" sysctl -n net.ipv4.tcp_congestion_control)}; links: $* Mbit/s (sum $sum); direction $dir; ${secs}s; qdisc ${qdisc:-none under tbf}${SNDBUF:+; SNDBUF=$SNDBUF}${RCVBUF:+; RCVBUF=$RCVBUF}"
out=$(mktemp)
ip netns exec "$b" python3 "$py" server "$dir" "$secs" > "$out" 2>&1 &
srv=$!
for _ in $(seq 50); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
read -ra b0 <<< "$(bytes | tr "\n" " ")"
ca0=$(counters "$a"); cb0=$(counters "$b")
ip netns exec "$a" python3 "$py" client "$dir" "$secs" >> "$out" 2>&1 &
cli=$!
sleep "$(echo "$secs / 2 + 0.5" | bc)"
echo "--- ss -tinm, client side (a), mid-flow"; ip netns exec "$a" ss -tinmH state established
echo "--- ss -tinm, server side (b), mid-flow"; ip netns exec "$b" ss -tinmH state established
echo "--- ss -Minm (MPTCP sockets): a then b"; ip netns exec "$a" ss -MinmH; ip netns exec "$b" ss -MinmH
wait "$cli" "$srv" || true
read -ra b1 <<< "$(bytes | tr "\n" " ")"
grep received "$out"
got=$(awk '/received/ {printf "%.1f", $2 * 8 / $5 / 1e6}' "$out")
echo "goodput $got Mbit/s = $(echo "scale=1; 100 * $got / $sum" | bc) % of the links' nominal sum $sum"
total=0; for j in $(seq 0 $((links - 1))); do total=$((total + b1[j] - b0[j])); done
for j in $(seq 0 $((links - 1))); do
    echo "link $j (${*:$((j + 1)):1}): $(( 100 * (b1[j] - b0[j]) / (total > 0 ? total : 1) )) % of the bytes"
done
# (No process substitution: the lab VM's /dev has no /dev/fd.)
moved() { # before-text, namespace
    printf '%s\n' "$1" | sort > "$out.0"
    counters "$2" | sort > "$out.1"
    join "$out.0" "$out.1" | awk '$3 > $2 {print $1, $3 - $2}'
}
echo "--- counters that moved: client side (a)"
moved "$ca0" "$a"
echo "--- counters that moved: server side (b)"
moved "$cb0" "$b"
rm -f "$out" "$out.0" "$out.1"
