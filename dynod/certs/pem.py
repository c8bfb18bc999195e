"""Reading and checking PEM certificates and keys; self-signed defaults.

:func:`inspect` is what ``certs:add`` relies on: the chain parses, the key
matches its first certificate, and the certificate is not expired, or the
upload is refused with :class:`InvalidCertificate` saying which check failed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dynod.errors import InvalidCertificate


@dataclass(frozen=True)
class CertInfo:
    domains: tuple[str, ...]
    not_before: float
    not_after: float
    issuer: str
    subject: str


def inspect(
    chain_pem: str, key_pem: str | None = None, now: float | None = None
) -> CertInfo:
    """Facts about the first certificate of ``chain_pem``, checked against the key."""
    # The chain must hold at least one certificate; the first is the leaf.
    try:
        certs = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError as exc:
        raise InvalidCertificate(
            f"The certificate chain is not PEM certificates ({exc}); pass the "
            "certificate file first, then any intermediates."
        ) from exc
    leaf = certs[0]

    # The key must be the leaf's own.
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidCertificate(
                f"The private key is not an unencrypted PEM key ({exc}); remove any "
                "passphrase (openssl pkey -in KEY -out KEY.plain) and try again."
            ) from exc
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        own = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != own:
            raise InvalidCertificate(
                "The private key does not match the certificate: pass the key the "
                "certificate was issued for."
            )

    # An expired certificate would only make clients fail.
    not_after = leaf.not_valid_after_utc.timestamp()
    current = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    if not_after <= current:
        raise InvalidCertificate(
            f"The certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}: "
            "renew it and upload the new one."
        )
    domains = _names(leaf)
    if not domains:
        raise InvalidCertificate(
            "The certificate names no domain (no DNS subjectAltName or common name)."
        )
    return CertInfo(
        domains=domains,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=not_after,
        issuer=leaf.issuer.rfc4514_string(),
        subject=leaf.subject.rfc4514_string(),
    )


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(a.value).lower()
            for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return tuple(dict.fromkeys(names))


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def self_signed(names: list[str], days: int = 3650) -> tuple[str, str]:
    """A self-signed certificate for ``names``, as (chain PEM, key PEM)."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)


def csr_pem(key: ec.EllipticCurvePrivateKey, names: list[str]) -> bytes:
    """A certificate signing request for ``names`` (ACME orders)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)
