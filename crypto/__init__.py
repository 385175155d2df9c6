"""Doorward's cryptography: the age format (`crypto.age`), identities, signed documents.

Lower layers import only the standard library, `cryptography` and `spake2`.
"""

import logging

from crypto.errors import (
    AgeError,
    CryptoError,
    DoorwardError,
    HeaderError,
    HeaderMacError,
    KeyFileError,
    NoIdentityMatched,
    PairingFailed,
    PayloadError,
    SignatureError,
    UnsupportedRecipient,
)
from crypto.files import fsync_dir, write_atomic
from crypto.keys import (
    DeviceIdentity,
    KeyBundle,
    PublicKeyBundle,
    RecipientKind,
    device_id,
    key_id,
    load_ed25519_public,
    read_secret_file,
    write_secret_file,
)
from crypto.signed import b64url, b64url_decode, canonical_json, sign_document, verify_document

__all__ = [
    "AgeError",
    "CryptoError",
    "DeviceIdentity",
    "DoorwardError",
    "HeaderError",
    "HeaderMacError",
    "KeyBundle",
    "KeyFileError",
    "NoIdentityMatched",
    "PairingFailed",
    "PayloadError",
    "PublicKeyBundle",
    "RecipientKind",
    "SignatureError",
    "UnsupportedRecipient",
    "b64url",
    "b64url_decode",
    "canonical_json",
    "device_id",
    "fsync_dir",
    "key_id",
    "load_ed25519_public",
    "read_secret_file",
    "sign_document",
    "verify_document",
    "write_atomic",
    "write_secret_file",
]


logging.getLogger(__name__).addHandler(logging.NullHandler())
