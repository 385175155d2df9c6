"""The native X25519 recipient type (age1…, AGE-SECRET-KEY-1…)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.age import _bech32
from crypto.age._format import Stanza, b64_decode, b64_encode
from crypto.errors import HeaderError, KeyFileError

__all__ = ["X25519Identity", "X25519Recipient", "open_file_key", "seal_file_key"]

_INFO = b"age-encryption.org/v1/X25519"
_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "age-secret-key-"
_ZERO_NONCE = bytes(12)
FILE_KEY_SIZE = 16
_RAW = serialization.Encoding.Raw


def seal_file_key(wrap_key: bytes, file_key: bytes) -> bytes:
    """ChaCha20-Poly1305 with the fixed zero nonce: safe because each wrap key is used once."""
    return ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)


def open_file_key(wrap_key: bytes, body: bytes, what: str) -> bytes | None:
    """The file key in a stanza body, or None if it does not authenticate under `wrap_key`."""
    # The length check comes first to avoid a partitioning oracle (age spec).
    if len(body) != FILE_KEY_SIZE + 16:
        raise HeaderError(f"{what} stanza body must be 32 bytes, got {len(body)}")
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def _public_raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, serialization.PublicFormat.Raw)


def _wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=share + recipient, info=_INFO)
    return hkdf.derive(shared)


@dataclass(frozen=True, slots=True)
class X25519Recipient:
    """An X25519 public key; str() gives the age1… string."""

    stanza_type: ClassVar[str] = "X25519"
    public_bytes: bytes

    def __post_init__(self) -> None:
        if len(self.public_bytes) != 32:
            raise ValueError(f"X25519 public key must be 32 bytes, got {len(self.public_bytes)}")

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        """Parse an age1… recipient string."""
        try:
            hrp, data = _bech32.decode(text)
        except ValueError as exc:
            raise KeyFileError(f"malformed X25519 recipient {text!r}: {exc}") from None
        if hrp != _RECIPIENT_HRP or text != text.lower() or len(data) != 32:
            raise KeyFileError(f"malformed X25519 recipient {text!r}: expected age1… (32 bytes)")
        return cls(data)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        """One X25519 stanza with a fresh ephemeral share."""
        ephemeral = X25519PrivateKey.generate()
        share = _public_raw(ephemeral.public_key())
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public_bytes))
        body = seal_file_key(_wrap_key(shared, share, self.public_bytes), file_key)
        return [Stanza(self.stanza_type, (b64_encode(share).decode(),), body)]

    def __str__(self) -> str:
        return _bech32.encode(_RECIPIENT_HRP, self.public_bytes)


@dataclass(frozen=True, slots=True)
class X25519Identity:
    """An X25519 secret key; the secret string only via to_secret_string()."""

    stanza_type: ClassVar[str] = "X25519"
    _key: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        """Parse an AGE-SECRET-KEY-1… string (never echoed in errors)."""
        try:
            hrp, data = _bech32.decode(text)
        except ValueError as exc:
            raise KeyFileError(f"malformed X25519 identity (AGE-SECRET-KEY-1…): {exc}") from None
        if hrp != _IDENTITY_HRP or text != text.upper() or len(data) != 32:
            raise KeyFileError("malformed X25519 identity: expected AGE-SECRET-KEY-1… (32 bytes)")
        return cls(X25519PrivateKey.from_private_bytes(data))

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(_public_raw(self._key.public_key()))

    def to_secret_string(self) -> str:
        """The AGE-SECRET-KEY-1… string: secret, for key files only."""
        raw = self._key.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return _bech32.encode(_IDENTITY_HRP, raw).upper()

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from the first X25519 stanza addressed to us, else None."""
        ours = _public_raw(self._key.public_key())
        for stanza in stanzas:
            if stanza.type != self.stanza_type:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("X25519 stanza must have exactly one argument (the share)")
            share = b64_decode(stanza.args[0].encode(), "X25519 share")
            if len(share) != 32:
                raise HeaderError(f"X25519 share must be 32 bytes, got {len(share)}")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError("X25519 share is a low-order point (all-zero secret)") from None
            file_key = open_file_key(_wrap_key(shared, share, ours), stanza.body, "X25519")
            if file_key is not None:
                return file_key
        return None

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient()})"
