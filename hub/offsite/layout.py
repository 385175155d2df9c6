"""Object names in the bucket, and what each one tells whoever runs the store.

Under the configured prefix (``s3://BUCKET/PREFIX/``)::

    seg/<payload-sha256>          a segment's age file, byte for byte as the device stores it
    man/<clip-token>              the clip's device-signed manifest (replaced as the clip grows;
                                  its final, sealed version last)
    log/<start>.age               audit entries start… (canonical JSON, one per line), age-encrypted
                                  to the owners paired at upload time
    ckpt/<size>                   the device-signed checkpoint of the audit log at that size
    rel/<release-id>              a release bundle, for the requester's presigned download

What the storage operator learns, and nothing more: the prefix (the owner chooses it; the default
is the device id's first 16 characters), how many objects of each kind there are, their sizes and
upload times (so when and roughly how much the cameras recorded), the audit log's size at each
checkpoint, and release ids. Segment names are SHA-256 hashes of ciphertext; a clip token is an
HMAC of the clip id under a key derived from the device's private key, so neither camera names nor
clip times appear in a key, and no object carries metadata. Every object's content is either age
ciphertext to the owners or a signature over hashes (manifests and checkpoints name cameras and
clip times in plain text: a manifest is signed, not encrypted, so that whoever holds it can check
it; see the README's backup section).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CHECKPOINTS",
    "LOG",
    "MANIFESTS",
    "RELEASES",
    "SEGMENTS",
    "checkpoint_name",
    "clip_token_key",
    "is_manifest_name",
    "log_name",
    "manifest_name",
    "parse_checkpoint_name",
    "parse_log_name",
    "release_name",
    "segment_name",
]

SEGMENTS = "seg/"
MANIFESTS = "man/"
LOG = "log/"
CHECKPOINTS = "ckpt/"
RELEASES = "rel/"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_NUMBER = re.compile(r"[0-9]{12}")
_RELEASE = re.compile(r"[A-Za-z0-9_-]{8,128}")


def segment_name(payload_sha256: str) -> str:
    """The object name of a segment whose payload hashes to ``payload_sha256`` (hex)."""
    if not _HEX64.fullmatch(payload_sha256):
        raise ValueError(f"a segment's payload SHA-256 is 64 hex digits, not {payload_sha256!r}")
    return SEGMENTS + payload_sha256


def clip_token_key(device_key: Ed25519PrivateKey) -> bytes:
    """The HMAC key that turns clip ids into opaque tokens; only the device can compute it."""
    raw = device_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"doorward backup clip names v1"
    ).derive(raw)


def manifest_name(token_key: bytes, clip_id: str) -> str:
    """The object name of a clip's manifest: ``man/`` and 32 hex digits of HMAC(clip id)."""
    token = hmac.new(token_key, clip_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return MANIFESTS + token


def is_manifest_name(name: str) -> bool:
    """Whether ``name`` has the form of a manifest object's name."""
    return name.startswith(MANIFESTS) and bool(_TOKEN.fullmatch(name[len(MANIFESTS) :]))


def log_name(start: int) -> str:
    """The object name of the audit entries from index ``start`` on."""
    return f"{LOG}{_number(start)}.age"


def parse_log_name(name: str) -> int | None:
    """The first entry index of a log object's name, or None if it is not one."""
    if not name.startswith(LOG) or not name.endswith(".age"):
        return None
    digits = name[len(LOG) : -len(".age")]
    return int(digits) if _NUMBER.fullmatch(digits) else None


def checkpoint_name(size: int) -> str:
    """The object name of the checkpoint at tree size ``size``."""
    return CHECKPOINTS + _number(size)


def parse_checkpoint_name(name: str) -> int | None:
    """The tree size of a checkpoint object's name, or None if it is not one."""
    digits = name[len(CHECKPOINTS) :]
    return int(digits) if name.startswith(CHECKPOINTS) and _NUMBER.fullmatch(digits) else None


def release_name(release_id: str) -> str:
    """The object name of a release bundle."""
    if not _RELEASE.fullmatch(release_id):
        raise ValueError(f"release id {release_id!r} cannot name an object")
    return RELEASES + release_id


def _number(value: int) -> str:
    if not 0 <= value < 10**12:
        raise ValueError(f"{value} is out of range for an object name")
    return f"{value:012d}"
