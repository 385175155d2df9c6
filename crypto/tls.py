"""The device's TLS certificate and the TLS 1.3 contexts that serve it and pin it.

The device signs a self-signed X.509 certificate with its Ed25519 identity key. Phones do not trust
it through a CA: they pin the SHA-256 of its SubjectPublicKeyInfo (:func:`spki_fingerprint`), learnt
from the pairing QR code or during pairing. The pin survives a new certificate (new names, new
validity) because the key stays the same.

:func:`client_context` returns an :class:`ssl.SSLContext` that checks the pin inside the handshake
itself, so any client built on it (asyncio streams, aiohttp's ``ssl=`` argument, plain sockets)
refuses a mismatching server before a single byte of request data is written.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import ssl
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from crypto.errors import CryptoError
from crypto.signed import b64url, b64url_decode

__all__ = [
    "CERT_VALIDITY",
    "PinMismatch",
    "PinnedSSLContext",
    "client_context",
    "load_certificate",
    "make_certificate",
    "server_context",
    "spki_fingerprint",
    "write_certificate",
]

logger = logging.getLogger(__name__)

CERT_VALIDITY = timedelta(days=3650)
# Clients tolerate a device clock this far ahead of theirs: certificates start a day early.
_BACKDATE = timedelta(days=1)


class PinMismatch(ssl.SSLCertVerificationError):
    """The server's key is not the pinned one: not the paired doorbell, or someone in between."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.verify_message = message

    def __str__(self) -> str:
        return self.verify_message


def make_certificate(
    key: Ed25519PrivateKey,
    device_id: str,
    *,
    now: datetime,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1", "::1"),
    validity: timedelta = CERT_VALIDITY,
) -> x509.Certificate:
    """A self-signed certificate for the device: CN = device id, SAN = names and addresses."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, got a naive datetime")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        # RFC 5280 §4.1.2.2: positive, at most 20 octets; derived from the key so it is stable.
        .serial_number(int.from_bytes(_spki_digest(public)[:16], "big") >> 1 or 1)
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    # Ed25519 signs the whole message: no separate hash algorithm.
    return builder.sign(key, None)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """Write the certificate as PEM (public data: mode 0644), creating the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate written by :func:`write_certificate`."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError as exc:
        raise CryptoError(f"certificate {path} does not exist; start the device once") from exc
    except ValueError as exc:
        raise CryptoError(f"certificate {path} is not a PEM certificate; delete it") from exc


def spki_fingerprint(cert: x509.Certificate | Ed25519PublicKey | bytes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER, unpadded base64url (43 characters).

    Accepts a certificate, an Ed25519 public key, or a certificate in DER form.
    """
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    public = cert.public_key() if isinstance(cert, x509.Certificate) else cert
    return b64url(_spki_digest(public))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS 1.3-only server context with the device certificate and its key file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    return context


def client_context(pinned_fingerprint: str) -> PinnedSSLContext:
    """A TLS 1.3-only client context that accepts only the server whose SPKI hash is pinned."""
    return PinnedSSLContext(pinned_fingerprint)


class _PinnedSSLObject(ssl.SSLObject):
    """Checks the pin as the last step of the handshake, before the application may write."""

    def do_handshake(self) -> None:
        super().do_handshake()
        _check_pin(self.context, self.getpeercert(binary_form=True))


class _PinnedSSLSocket(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check_pin(self.context, self.getpeercert(binary_form=True))


class PinnedSSLContext(ssl.SSLContext):
    """A client context bound to one SPKI pin for its whole life.

    Certificate chains and host names are not checked (the certificate is self-signed); the pin
    is, on every handshake, and a mismatch raises :class:`PinMismatch` (an
    ``ssl.SSLCertVerificationError``) before the handshake is reported complete.
    """

    sslobject_class = _PinnedSSLObject
    sslsocket_class = _PinnedSSLSocket

    def __new__(cls, pinned_fingerprint: str, *args: Any, **kwargs: Any) -> PinnedSSLContext:
        """A TLS client context; ``__init__`` then checks the pin and limits it to TLS 1.3."""
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, pinned_fingerprint: str) -> None:
        try:
            raw = b64url_decode(pinned_fingerprint)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "pinned fingerprint must be 43 characters of unpadded base64url (SHA-256), "
                f"got {str(pinned_fingerprint)[:64]!r}"
            )
        super().__init__()
        self.check_hostname = False
        self.verify_mode = ssl.CERT_NONE
        self.minimum_version = ssl.TLSVersion.TLSv1_3
        self.maximum_version = ssl.TLSVersion.TLSv1_3
        self.__pin = raw

    @property
    def pinned_fingerprint(self) -> str:
        """The pinned SPKI SHA-256, as 43 characters of unpadded base64url."""
        return b64url(self.__pin)

    def _matches(self, peer_der: bytes | None) -> tuple[bool, str]:
        if peer_der is None:
            return False, "none"
        actual = _spki_digest(x509.load_der_x509_certificate(peer_der).public_key())
        return hmac.compare_digest(actual, self.__pin), b64url(actual)


def _check_pin(context: ssl.SSLContext, peer_der: bytes | None) -> None:
    if not isinstance(context, PinnedSSLContext):
        raise PinMismatch("TLS pinning needs a PinnedSSLContext; refusing the connection")
    ok, actual = context._matches(peer_der)
    if not ok:
        logger.warning("tls.pin_mismatch expected=%s actual=%s", context.pinned_fingerprint, actual)
        raise PinMismatch(
            f"the server's TLS key {actual} is not the pinned {context.pinned_fingerprint}: "
            "this is not the paired doorbell, or someone is intercepting the connection; "
            "pair again only if you reset the doorbell"
        )


def _spki_digest(public: Any) -> bytes:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()
