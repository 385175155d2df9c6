"""Identities: the device's Ed25519 key, owner and requester key bundles, key ids, key files.

- The **device** holds one Ed25519 key. Its id is a short base32 form of SHA-256 of the public key.
- An **owner** (a phone) or a **requester** holds a :class:`KeyBundle`: an Ed25519 signing key and an
  age identity (post-quantum hybrid by default, classic X25519 on request for older tools).
- Key ids are RFC 7638 JWK thumbprints of the Ed25519 public key.

Secret key files are written with mode 0600; loading one that group or others can read is refused.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto import age
from crypto.errors import KeyFileError
from crypto.files import write_atomic
from crypto.signed import b64url, b64url_decode

__all__ = [
    "DeviceIdentity",
    "KeyBundle",
    "PublicKeyBundle",
    "RecipientKind",
    "device_id",
    "key_id",
    "load_ed25519_public",
    "read_secret_file",
    "write_secret_file",
]

RecipientKind = Literal["hybrid", "x25519"]

_SIGNING_FILE = "signing.ed25519"
_AGE_FILE = "age.key"


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key."""
    x = b64url(public_key.public_bytes_raw())
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()
    return b64url(hashlib.sha256(canonical).digest())


def device_id(public_key: Ed25519PublicKey) -> str:
    """Short device id: lowercase base32 of the first 80 bits of SHA-256 of the raw public key."""
    digest = hashlib.sha256(public_key.public_bytes_raw()).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def load_ed25519_public(text: str) -> Ed25519PublicKey:
    """Parse a raw Ed25519 public key given as unpadded base64url."""
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise KeyFileError(f"Ed25519 public key {text[:64]!r} is not base64url") from exc
    if len(raw) != 32:
        raise KeyFileError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def write_secret_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600)


def read_secret_file(path: Path) -> bytes:
    """Read a secret key file, refusing one that group or others may read."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist; create it first") from exc
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}` and try again"
        )
    return path.read_bytes()


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The device's Ed25519 key: signs its TLS certificate, clip manifests and audit checkpoints."""

    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> DeviceIdentity:
        """A new random device key, not yet saved (see :meth:`save`)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> DeviceIdentity:
        """Read the PEM key at ``path``; KeyFileError if absent, readable by others, not Ed25519."""
        return cls(_load_ed25519_private(Path(path)))

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceIdentity:
        """Load the key at ``path``, creating it on first start."""
        if Path(path).exists():
            return cls.load(path)
        identity = cls.generate()
        identity.save(path)
        return identity

    def save(self, path: Path) -> None:
        """Write the key to ``path`` as unencrypted PKCS#8 PEM, atomically, mode 0600."""
        write_secret_file(Path(path), _pem_private(self.private_key))

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key that verifies :meth:`sign`."""
        return self.private_key.public_key()

    @property
    def device_id(self) -> str:
        """This device's short id (16 base32 characters, see :func:`device_id`)."""
        return device_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature over ``data``."""
        return self.private_key.sign(data)

    def __repr__(self) -> str:
        return f"DeviceIdentity(device_id={self.device_id!r})"


@dataclass(frozen=True, slots=True)
class PublicKeyBundle:
    """The public half of a :class:`KeyBundle`: what a device or a requester learns about a party."""

    signing_public: Ed25519PublicKey
    recipient: age.Recipient

    @property
    def key_id(self) -> str:
        """The signing key's RFC 7638 thumbprint (see :func:`key_id`)."""
        return key_id(self.signing_public)

    def to_json(self) -> dict[str, str]:
        """``{"ed25519": <raw key in base64url>, "age": <age recipient>}``."""
        return {
            "ed25519": b64url(self.signing_public.public_bytes_raw()),
            "age": str(self.recipient),
        }

    @classmethod
    def from_json(cls, data: Any) -> PublicKeyBundle:
        """Parse :meth:`to_json` output; KeyFileError (UnsupportedRecipient: not age1…) if bad."""
        if not isinstance(data, dict) or set(data) != {"ed25519", "age"}:
            raise KeyFileError(
                "public key bundle must be an object with exactly 'ed25519' and 'age'"
            )
        if not isinstance(data["ed25519"], str) or not isinstance(data["age"], str):
            raise KeyFileError("public key bundle fields must be strings")
        return cls(load_ed25519_public(data["ed25519"]), age.parse_recipient(data["age"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKeyBundle):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"PublicKeyBundle(key_id={self.key_id!r}, recipient={str(self.recipient)[:24]!r}…)"


@dataclass(frozen=True, slots=True)
class KeyBundle:
    """An owner's or requester's keys: an Ed25519 signing key and an age identity."""

    signing_key: Ed25519PrivateKey = field(repr=False)
    age_identity: age.Identity = field(repr=False)

    @classmethod
    def generate(cls, recipient_kind: RecipientKind = "hybrid") -> KeyBundle:
        """New random keys; the age identity is ``"hybrid"`` or ``"x25519"`` (else ValueError)."""
        identity: age.Identity
        if recipient_kind == "hybrid":
            identity = age.HybridIdentity.generate()
        elif recipient_kind == "x25519":
            identity = age.X25519Identity.generate()
        else:
            raise ValueError(f"recipient_kind must be 'hybrid' or 'x25519', got {recipient_kind!r}")
        return cls(Ed25519PrivateKey.generate(), identity)

    @classmethod
    def load(cls, directory: Path) -> KeyBundle:
        """Load ``signing.ed25519`` and ``age.key`` (an age identity file) from ``directory``."""
        directory = Path(directory)
        signing = _load_ed25519_private(directory / _SIGNING_FILE)
        identities = age.parse_identities(read_secret_file(directory / _AGE_FILE).decode())
        if len(identities) != 1:
            raise KeyFileError(
                f"{directory / _AGE_FILE} must hold exactly one age identity, got {len(identities)}"
            )
        return cls(signing, identities[0])

    def save(self, directory: Path) -> None:
        """Write the keys to ``directory`` (mode 0600); ``age.key`` is usable with ``age -d -i``."""
        directory = Path(directory)
        write_secret_file(directory / _SIGNING_FILE, _pem_private(self.signing_key))
        created = datetime.now(UTC).replace(microsecond=0).isoformat()
        text = (
            f"# created: {created}\n"
            f"# public key: {self.recipient}\n"
            f"{self.age_identity.to_secret_string()}\n"
        )
        write_secret_file(directory / _AGE_FILE, text.encode())

    @property
    def recipient(self) -> age.Recipient:
        """The age recipient that files for this party are encrypted to."""
        return self.age_identity.recipient()

    @property
    def key_id(self) -> str:
        """The signing key's RFC 7638 thumbprint (see :func:`key_id`)."""
        return key_id(self.signing_key.public_key())

    def public(self) -> PublicKeyBundle:
        """The public half, safe to share: the signing public key and the age recipient."""
        return PublicKeyBundle(self.signing_key.public_key(), self.recipient)

    def __repr__(self) -> str:
        return f"KeyBundle(key_id={self.key_id!r})"


def _pem_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    data = read_secret_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
