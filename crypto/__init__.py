"""Doorward's cryptography: the age format (`crypto.age`), identities, signed documents.

Lower layers import only the standard library, `cryptography` and `spake2`. The names below load
on first use, so importing one module (``crypto.errors``, say) does not import them all.
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "AgeError": "crypto.errors",
    "CryptoError": "crypto.errors",
    "DeviceIdentity": "crypto.keys",
    "DoorwardError": "crypto.errors",
    "HeaderError": "crypto.errors",
    "HeaderMacError": "crypto.errors",
    "KeyBundle": "crypto.keys",
    "KeyFileError": "crypto.errors",
    "NoIdentityMatched": "crypto.errors",
    "PairingFailed": "crypto.errors",
    "PayloadError": "crypto.errors",
    "PublicKeyBundle": "crypto.keys",
    "RecipientKind": "crypto.keys",
    "SignatureError": "crypto.errors",
    "UnsupportedRecipient": "crypto.errors",
    "b64url": "crypto.signed",
    "b64url_decode": "crypto.signed",
    "canonical_json": "crypto.signed",
    "device_id": "crypto.keys",
    "fsync_dir": "crypto.files",
    "key_id": "crypto.keys",
    "load_ed25519_public": "crypto.keys",
    "read_secret_file": "crypto.keys",
    "sign_document": "crypto.signed",
    "verify_document": "crypto.signed",
    "write_atomic": "crypto.files",
    "write_secret_file": "crypto.keys",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'crypto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())
