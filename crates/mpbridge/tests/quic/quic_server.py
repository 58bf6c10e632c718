"""A QUIC server for the tests (aioquic): completes handshakes on HOST:PORT
with a throwaway self-signed certificate made at start, and prints a line
per completed handshake with the client's address as it saw it.

Usage: quic_server.py HOST PORT
"""

import asyncio
import datetime
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN = "mpbridge-test"


def self_signed():
    """A key and a certificate for ALPN's name, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ALPN)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ALPN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


class Reporting(QuicConnectionProtocol):
    """Notes where datagrams come from; reports each completed handshake."""

    peer = None

    def datagram_received(self, data, addr):
        self.peer = addr
        super().datagram_received(data, addr)

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            print(f"handshake from {self.peer[0]}", flush=True)


async def main(host, port):
    key, cert = self_signed()
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    config.certificate = cert
    config.private_key = key
    await serve(host, port, configuration=config, create_protocol=Reporting)
    print(f"listening on {host} port {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
