"""Certificates made by the tests, and TLS clients that check what they got."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from dynod.certs.pem import self_signed


def make_cert(names: list[str], days: int = 30) -> tuple[str, str]:
    """A self-signed (chain PEM, key PEM) for ``names``."""
    return self_signed(names, days=days)


def trusting(chain_pem: str, tmp: Path) -> ssl.SSLContext:
    """A client context that trusts only ``chain_pem`` and checks host names."""
    ca = tmp / f"ca-{abs(hash(chain_pem))}.pem"
    ca.write_text(chain_pem)
    return ssl.create_default_context(cafile=str(ca))


def any_cert() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def https_request(
    port: int,
    sni: str | None,
    host: str,
    ctx: ssl.SSLContext,
    path: str = "/",
) -> tuple[int, dict[str, str], bytes]:
    """One GET over TLS; returns status, headers (lower-case names) and body."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(request.encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def peer_names(port: int, sni: str | None) -> list[str]:
    """The DNS names of the certificate the router shows for ``sni``."""
    from cryptography import x509

    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        any_cert().wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
