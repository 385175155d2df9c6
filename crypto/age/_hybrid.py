"""The ML-KEM-768 + X25519 hybrid recipient type of age v1.3 (age1pq1…, AGE-SECRET-KEY-PQ-1…)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from crypto.age import _bech32
from crypto.age._format import Stanza, b64_decode, b64_encode
from crypto.errors import HeaderError, KeyFileError

__all__ = ["HybridIdentity", "HybridRecipient"]

_INFO = b"age-encryption.org/mlkem768x25519"
_RECIPIENT_HRP = "age1pq"
_IDENTITY_HRP = "age-secret-key-pq-"
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_MLKEM_PUBLIC_SIZE = 1184
_MLKEM_CIPHERTEXT_SIZE = 1088
_ENC_SIZE = _MLKEM_CIPHERTEXT_SIZE + 32  # ML-KEM ciphertext || X25519 share
_PUBLIC_SIZE = _MLKEM_PUBLIC_SIZE + 32
_SEED_SIZE = 32
_RAW = serialization.Encoding.Raw


@dataclass(frozen=True, slots=True)
class HybridRecipient:
    """An ML-KEM-768+X25519 public key (1,216 bytes); str() gives the age1pq1… string."""

    stanza_type: ClassVar[str] = "mlkem768x25519"
    public_bytes: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.public_bytes) != _PUBLIC_SIZE:
            raise ValueError(
                f"hybrid public key must be {_PUBLIC_SIZE} bytes, got {len(self.public_bytes)}"
            )

    @classmethod
    def parse(cls, text: str) -> HybridRecipient:
        """Parse an age1pq1… recipient string."""
        shown = text if len(text) <= 40 else text[:32] + "…"
        try:
            hrp, data = _bech32.decode(text)
        except ValueError as exc:
            raise KeyFileError(f"malformed hybrid recipient {shown!r}: {exc}") from None
        if hrp != _RECIPIENT_HRP or text != text.lower() or len(data) != _PUBLIC_SIZE:
            raise KeyFileError(f"malformed hybrid recipient {shown!r}: expected age1pq1…")
        try:
            cls._hpke_key(data)
        except ValueError:
            raise KeyFileError(f"malformed hybrid recipient {shown!r}: bad key") from None
        return cls(data)

    @staticmethod
    def _hpke_key(data: bytes) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM_PUBLIC_SIZE]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM_PUBLIC_SIZE:]),
        )

    def wrap(self, file_key: bytes) -> list[Stanza]:
        """One mlkem768x25519 stanza: HPKE SealBase of the file key."""
        sealed = _SUITE.encrypt(file_key, self._hpke_key(self.public_bytes), info=_INFO)
        enc, body = sealed[:_ENC_SIZE], sealed[_ENC_SIZE:]
        return [Stanza(self.stanza_type, (b64_encode(enc).decode(),), body)]

    def __str__(self) -> str:
        return _bech32.encode(_RECIPIENT_HRP, self.public_bytes)

    def __repr__(self) -> str:
        return f"HybridRecipient({str(self)[:20]}…)"


@dataclass(frozen=True, slots=True)
class HybridIdentity:
    """An ML-KEM-768+X25519 identity (a 32-byte seed); secret string via to_secret_string()."""

    stanza_type: ClassVar[str] = "mlkem768x25519"
    _seed: bytes = field(repr=False)
    _mlkem: mlkem.MLKEM768PrivateKey = field(init=False, repr=False, compare=False)
    _x25519: x25519.X25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self._seed) != _SEED_SIZE:
            raise ValueError(f"hybrid identity seed must be 32 bytes, got {len(self._seed)}")
        # draft-ietf-hpke-pq: expand the seed with SHAKE256 into the ML-KEM seed (d || z)
        # and the X25519 secret.
        expanded = hashlib.shake_256(self._seed).digest(96)
        object.__setattr__(self, "_mlkem", mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]))
        object.__setattr__(
            self, "_x25519", x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
        )

    @classmethod
    def generate(cls) -> HybridIdentity:
        return cls(os.urandom(_SEED_SIZE))

    @classmethod
    def parse(cls, text: str) -> HybridIdentity:
        """Parse an AGE-SECRET-KEY-PQ-1… string (never echoed in errors)."""
        try:
            hrp, data = _bech32.decode(text)
        except ValueError as exc:
            raise KeyFileError(f"malformed hybrid identity (AGE-SECRET-KEY-PQ-1…): {exc}") from None
        if hrp != _IDENTITY_HRP or text != text.upper() or len(data) != _SEED_SIZE:
            raise KeyFileError(
                "malformed hybrid identity: expected AGE-SECRET-KEY-PQ-1… (32 bytes)"
            )
        return cls(data)

    def recipient(self) -> HybridRecipient:
        x_public = self._x25519.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        return HybridRecipient(self._mlkem.public_key().public_bytes_raw() + x_public)

    def to_secret_string(self) -> str:
        """The AGE-SECRET-KEY-PQ-1… string: secret, for key files only."""
        return _bech32.encode(_IDENTITY_HRP, self._seed).upper()

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from the first mlkem768x25519 stanza addressed to us, else None."""
        key = hpke.MLKEM768X25519PrivateKey(self._mlkem, self._x25519)
        for stanza in stanzas:
            if stanza.type != self.stanza_type:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("mlkem768x25519 stanza must have exactly one argument (enc)")
            enc = b64_decode(stanza.args[0].encode(), "mlkem768x25519 enc")
            if len(enc) != _ENC_SIZE:
                raise HeaderError(f"mlkem768x25519 enc must be {_ENC_SIZE} bytes, got {len(enc)}")
            # Checked before decrypting, against partitioning oracles (age spec).
            if len(stanza.body) != 32:
                raise HeaderError(
                    f"mlkem768x25519 stanza body must be 32 bytes, got {len(stanza.body)}"
                )
            share = enc[_MLKEM_CIPHERTEXT_SIZE:]
            try:
                self._x25519.exchange(x25519.X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError(
                    "mlkem768x25519 X25519 share is a low-order point (all-zero secret)"
                ) from None
            try:
                return _SUITE.decrypt(enc + stanza.body, key, info=_INFO)
            except InvalidTag:
                continue
        return None

    def __repr__(self) -> str:
        return f"HybridIdentity(recipient={self.recipient()!r})"
