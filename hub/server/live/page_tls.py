"""The TLS certificate of the live-view page's port: ECDSA P-256, because browsers do not accept
Ed25519 server certificates (Chromium's TLS stack offers no Ed25519 signature algorithm).

The API port keeps the device's Ed25519 certificate, which phones pin. The page port has this
second, self-signed certificate, which nobody pins: a browser warns about it once (no CA on a LAN),
and it carries nothing the page relies on: the link token is what authorises viewing. So the page
port serves only the page and its calls (``hub.server.app.create_page_app``), never the API,
and only over TLS 1.3 (every browser that runs the page speaks it). The key is kept under the data
directory (0600) so a browser's exception survives a restart.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crypto.files import write_atomic
from crypto.keys import read_secret_file, write_secret_file
from crypto.signed import b64url

__all__ = ["page_spki_sha256", "page_tls_context"]

_VALIDITY = timedelta(days=825)  # the longest validity browsers accept for a server certificate


def page_tls_context(key_dir: Path, *, now: datetime | None = None) -> ssl.SSLContext:
    """A TLS 1.3 server context with the page certificate, created on first use."""
    key_path, cert_path = key_dir / "page-ecdsa.key", key_dir / "page-ecdsa.crt"
    if not key_path.exists() or not cert_path.exists():
        _create(key_path, cert_path, now or datetime.now(UTC))
    else:
        read_secret_file(key_path)  # refuses a key file others can read
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    return context


def page_spki_sha256(key_dir: Path) -> str:
    """SHA-256 of the page certificate's SubjectPublicKeyInfo, unpadded base64url."""
    cert = x509.load_pem_x509_certificate((key_dir / "page-ecdsa.crt").read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return b64url(digest.finalize())


def _create(key_path: Path, cert_path: Path, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Doorward live view")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    write_secret_file(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
