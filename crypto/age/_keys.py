"""What recipients and identities are, and parsing them from the strings age writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crypto.age._format import Stanza
from crypto.age._hybrid import HybridIdentity, HybridRecipient
from crypto.age._x25519 import X25519Identity, X25519Recipient
from crypto.errors import KeyFileError, UnsupportedRecipient

__all__ = [
    "Identity",
    "Recipient",
    "Unwrapper",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
]

# Caps for identity files we are handed: a key file is a few lines, never megabytes.
_MAX_IDENTITY_FILE_CHARS = 1024 * 1024
_MAX_IDENTITIES = 1024


@runtime_checkable
class Recipient(Protocol):
    """Something that wraps a file key into stanzas."""

    @property
    def stanza_type(self) -> str: ...

    def wrap(self, file_key: bytes) -> list[Stanza]: ...


@runtime_checkable
class Unwrapper(Protocol):
    """Something that unwraps a file key from stanzas: None if none is addressed to it."""

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


@runtime_checkable
class Identity(Unwrapper, Protocol):
    """A secret key: unwraps file keys, names its recipient, and can be saved to a key file."""

    def recipient(self) -> Recipient: ...

    def to_secret_string(self) -> str: ...


def parse_recipient(text: str) -> X25519Recipient | HybridRecipient:
    """An age1… (X25519) or age1pq1… (hybrid) recipient string."""
    text = text.strip()
    if text.startswith("age1pq1"):
        return HybridRecipient.parse(text)
    if text.startswith("age1"):
        return X25519Recipient.parse(text)
    shown = text if len(text) <= 40 else text[:32] + "…"
    raise UnsupportedRecipient(
        f"unsupported recipient {shown!r}: expected an age1… (X25519) or age1pq1… (hybrid) key"
    )


def parse_identity(text: str) -> X25519Identity | HybridIdentity:
    """An AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1… string; errors never echo it."""
    text = text.strip()
    if text.startswith("AGE-SECRET-KEY-PQ-1"):
        return HybridIdentity.parse(text)
    if text.startswith("AGE-SECRET-KEY-1"):
        return X25519Identity.parse(text)
    raise KeyFileError(
        "unrecognized identity: expected AGE-SECRET-KEY-1… (X25519) or AGE-SECRET-KEY-PQ-1… "
        "(hybrid), as written by age-keygen"
    )


def parse_identities(text: str) -> list[X25519Identity | HybridIdentity]:
    """Every identity in an identity file (age-keygen output); '#' lines and blanks skipped."""
    if len(text) > _MAX_IDENTITY_FILE_CHARS:
        raise KeyFileError("identity file is larger than 1 MiB: not an age identity file")
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except KeyFileError as exc:
            raise KeyFileError(f"identity file line {number}: {exc}") from None
        if len(identities) > _MAX_IDENTITIES:
            raise KeyFileError(f"identity file holds more than {_MAX_IDENTITIES} identities")
    if not identities:
        raise KeyFileError("identity file holds no identities (AGE-SECRET-KEY-…)")
    return identities
