"""age (age-encryption.org/v1) files on `cryptography` primitives, with re-heading.

Common case::

    identity = HybridIdentity.generate()
    with open("clip.age", "wb") as f, Encryptor(f, [identity.recipient()]) as enc:
        enc.write(data)
    decrypt([identity], open("clip.age", "rb"), out)

Keys use age's own strings (`age1…`, `age1pq1…`, `AGE-SECRET-KEY-1…`, `AGE-SECRET-KEY-PQ-1…`),
so files and keys move between Doorward and the `age` tools. `reheader` rewraps a file's key
for new recipients without touching the payload, whose SHA-256 (`payload_sha256`) is stable;
`reheader_for_payload` does so only after checking that the file key opens a given payload.
"""

from crypto.age._api import (
    PAYLOAD_HEAD_SIZE,
    Encryptor,
    decrypt,
    decrypt_bytes,
    encrypt,
    encrypt_bytes,
    payload_sha256,
    read_header,
    reheader,
    reheader_for_payload,
    split_header,
    stanza_types,
)
from crypto.age._armor import ArmorError, armor, dearmor
from crypto.age._format import Header, Stanza
from crypto.age._hybrid import HybridIdentity, HybridRecipient
from crypto.age._keys import (
    Identity,
    Recipient,
    Unwrapper,
    parse_identities,
    parse_identity,
    parse_recipient,
)
from crypto.age._scrypt import ScryptIdentity, ScryptRecipient
from crypto.age._stream import CHUNK_SIZE
from crypto.age._x25519 import X25519Identity, X25519Recipient

__all__ = [
    "CHUNK_SIZE",
    "PAYLOAD_HEAD_SIZE",
    "ArmorError",
    "Encryptor",
    "Header",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "Stanza",
    "Unwrapper",
    "X25519Identity",
    "X25519Recipient",
    "armor",
    "dearmor",
    "decrypt",
    "decrypt_bytes",
    "encrypt",
    "encrypt_bytes",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
    "payload_sha256",
    "read_header",
    "reheader",
    "reheader_for_payload",
    "split_header",
    "stanza_types",
]
