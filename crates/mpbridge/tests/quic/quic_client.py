"""A QUIC client for the tests (aioquic's protocol, driven here): like a
browser it sends from a connected UDP socket, so an ICMP port-unreachable
reaches it as ECONNREFUSED. Prints one JSON line: {"result": "handshake" |
"refused" | "closed" | "timeout", "ms": time since the first datagram left,
"setup_ms": the time aioquic took to build it}.

Usage: quic_client.py HOST PORT [TIMEOUT_SECONDS]
"""

import json
import select
import socket
import ssl
import sys
import time

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted

ALPN = "mpbridge-test"


def attempt(host, port, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect((host, port))
    peer = sock.getpeername()
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        server_name=ALPN,
        verify_mode=ssl.CERT_NONE,
    )
    quic = QuicConnection(configuration=config)
    start = time.monotonic()
    quic.connect(peer, now=start)
    deadline = start + timeout
    first = None

    def elapsed():
        since = time.monotonic() - (first or start)
        return {"ms": round(since * 1000, 2), "setup_ms": round(((first or start) - start) * 1000, 2)}

    while True:
        try:
            for data, _ in quic.datagrams_to_send(now=time.monotonic()):
                first = first or time.monotonic()
                sock.send(data)
            while (event := quic.next_event()) is not None:
                if isinstance(event, HandshakeCompleted):
                    return {"result": "handshake", **elapsed()}
                if isinstance(event, ConnectionTerminated):
                    return {"result": "closed", "reason": event.reason_phrase, **elapsed()}
            now = time.monotonic()
            if now >= deadline:
                return {"result": "timeout", **elapsed()}
            timer = quic.get_timer()
            wait = deadline - now if timer is None else min(deadline, timer) - now
            readable, _, _ = select.select([sock], [], [], max(wait, 0))
            if readable:
                data = sock.recv(65536)
                quic.receive_datagram(data, peer, now=time.monotonic())
            elif timer is not None and time.monotonic() >= timer:
                quic.handle_timer(now=time.monotonic())
        except ConnectionRefusedError:
            return {"result": "refused", **elapsed()}


if __name__ == "__main__":
    wait = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    print(json.dumps(attempt(sys.argv[1], int(sys.argv[2]), wait)), flush=True)
