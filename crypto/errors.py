"""Errors raised by Doorward's cryptography.

Hierarchy::

    DoorwardError                   root of every error Doorward raises on purpose
    └── CryptoError                 something about keys or encrypted data is wrong
        ├── KeyFileError            a key file is missing, malformed or too widely readable
        ├── AgeError                an age file cannot be read or written
        │   ├── HeaderError         the header is malformed (also armor problems)
        │   ├── UnsupportedRecipient a stanza or recipient type we do not handle
        │   ├── NoIdentityMatched   none of the identities unwraps the file key
        │   ├── HeaderMacError      the file key unwrapped but the header MAC is wrong
        │   └── PayloadError        the payload is corrupt or truncated
        ├── SignatureError          a signature or signed document does not verify
        └── PairingFailed           the pairing exchange did not confirm

Messages say what failed and what to do next; they never contain key material.
"""

from __future__ import annotations

__all__ = [
    "AgeError",
    "CryptoError",
    "DoorwardError",
    "HeaderError",
    "HeaderMacError",
    "KeyFileError",
    "NoIdentityMatched",
    "PairingFailed",
    "PayloadError",
    "SignatureError",
    "UnsupportedRecipient",
]


class DoorwardError(Exception):
    """Root of every error Doorward raises on purpose."""


class CryptoError(DoorwardError):
    """A key or a piece of encrypted data is not what it must be."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed, or readable by other users."""


class AgeError(CryptoError):
    """An age file cannot be read or written."""


class HeaderError(AgeError):
    """The age header (or its ASCII armor) is malformed."""


class UnsupportedRecipient(AgeError):
    """A recipient or stanza type that this implementation does not handle."""


class NoIdentityMatched(AgeError):
    """None of the given identities can unwrap the file key: wrong key for this file."""


class HeaderMacError(AgeError):
    """The file key unwrapped but the header MAC does not match: the header was altered."""


class PayloadError(AgeError):
    """The payload failed authentication or ended early: the file is corrupt or truncated."""


class SignatureError(CryptoError):
    """A signature or signed document does not verify against the expected key."""


class PairingFailed(CryptoError):
    """The pairing exchange failed: a mistyped setup code, or someone guessing it."""
