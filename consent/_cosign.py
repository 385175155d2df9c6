"""C2SP tlog-cosignature v1 with Ed25519 (c2sp.org/tlog-cosignature): a witness's note signature.

A cosignature is one more signature line on a checkpoint note (c2sp.org/signed-note)::

    — <cosigner name> base64(key ID || timestamp || Ed25519 signature)

* key ID: the first 4 bytes of SHA-256(name || 0x0A || 0x04 || 32-byte public key); signature type
  0x04 is "timestamped Ed25519 witness cosignature" in the signed-note registry;
* timestamp: when the cosigner signed, POSIX seconds as a big-endian u64 (at most 2**63 - 1);
* the signed message is ``cosignature/v1\\n``, ``time <timestamp>\\n`` (ASCII decimal, no leading
  zeros), then the checkpoint's whole note text (its final newline, no signature lines).

A cosignature states that, at that time, the largest consistent tree the cosigner has seen for the
log named by the origin line has that root hash. Doorward's cosigners are the owners' phones: the
name of an owner's cosigner key is ``doorward-owner/<owner key id>``, and its key is the owner's
paired Ed25519 key (see :func:`owner_cosigner`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent._audit_errors import CheckpointError, CosignatureError
from consent._note import (
    MAX_SIGNATURES,
    check_key_name,
    signature_line,
    signer_key_id,
    split_note,
    verifier_key,
)

__all__ = [
    "COSIGNATURE_TYPE",
    "MAX_TIMESTAMP",
    "Cosignature",
    "Cosigner",
    "add_cosignature",
    "cosignature_message",
    "cosigner_key_id",
    "owner_cosigner",
    "sign_cosignature",
    "verify_cosignature",
]

COSIGNATURE_TYPE = 0x04  # signed-note signature type: timestamped Ed25519 witness cosignature
MAX_TIMESTAMP = (1 << 63) - 1
_HEADER = b"cosignature/v1\n"
_BLOB_BYTES = 4 + 8 + 64  # key ID, timestamp, Ed25519 signature
_OWNER_PREFIX = "doorward-owner/"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def cosigner_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || 0x04 || Ed25519 public key)[:4]."""
    return signer_key_id(name, COSIGNATURE_TYPE, public_key)


def cosignature_message(note_text: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosigner signs: header line, time line, then the checkpoint text."""
    _check_timestamp(timestamp, ValueError)
    if not note_text.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    return _HEADER + b"time %d\n" % timestamp + note_text.encode()


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A cosigner's name and Ed25519 public key; verifier key ``<name>+<hex ID>+<base64(0x04||key)>``."""

    name: str
    public_key: Ed25519PublicKey = field(compare=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name, "cosigner name")
        object.__setattr__(self, "key_id", cosigner_key_id(self.name, self.public_key))

    def vkey(self) -> str:
        """The signed-note verifier key string of this cosigner."""
        return verifier_key(self.name, COSIGNATURE_TYPE, self.public_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cosigner):
            return NotImplemented
        return self.vkey() == other.vkey()

    def __hash__(self) -> int:
        return hash(self.vkey())


def owner_cosigner(owner_key_id: str, public_key: Ed25519PublicKey) -> Cosigner:
    """The cosigner of a paired owner: name ``doorward-owner/<key id>``, the owner's Ed25519 key."""
    if not _KEY_ID_RE.fullmatch(owner_key_id):
        raise ValueError(f"owner key id must be base64url, got {owner_key_id[:64]!r}")
    return Cosigner(_OWNER_PREFIX + owner_key_id, public_key)


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature: who made it, when (POSIX seconds), and its signature line."""

    cosigner: Cosigner
    timestamp: int
    line: str  # "— <name> <base64>\n"


def sign_cosignature(
    note_text: str, name: str, key: Ed25519PrivateKey, timestamp: int
) -> Cosignature:
    """Cosign a checkpoint's note text (without signatures) as ``name`` at ``timestamp``."""
    cosigner = Cosigner(name, key.public_key())
    signature = key.sign(cosignature_message(note_text, timestamp))
    blob = cosigner.key_id + struct.pack(">Q", timestamp) + signature
    return Cosignature(cosigner, timestamp, signature_line(name, blob))


def add_cosignature(note: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """``note`` (a signed checkpoint) with one more line: this cosigner's signature of its text.

    A line this cosigner added before is replaced, so a note holds one cosignature per cosigner.
    """
    text, signatures = split_note(note)
    cosignature = sign_cosignature(text, name, key, timestamp)
    kept = [
        (n, blob) for n, blob in signatures if (n, blob[:4]) != (name, cosignature.cosigner.key_id)
    ]
    if len(kept) + 1 > MAX_SIGNATURES:
        raise CosignatureError(
            f"note already has {len(kept)} signatures; the limit is {MAX_SIGNATURES}"
        )
    return _join(text, kept) + cosignature.line


def verify_cosignature(note: str | bytes, cosigner: Cosigner) -> Cosignature:
    """Find and verify ``cosigner``'s line on ``note``; raise CosignatureError if it is missing,
    malformed or does not verify. Lines of other keys are ignored, as the signed-note spec says."""
    try:
        text, signatures = split_note(note)
    except CheckpointError as exc:
        raise CosignatureError(f"cosigned checkpoint is not a signed note: {exc}") from exc
    found: Cosignature | None = None
    for name, blob in signatures:
        if name != cosigner.name or blob[:4] != cosigner.key_id:
            continue
        if len(blob) != _BLOB_BYTES:
            raise CosignatureError(
                f"cosignature by {name} must be {_BLOB_BYTES} bytes (key ID, u64 time, Ed25519 "
                f"signature), got {len(blob)}"
            )
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        _check_timestamp(timestamp, CosignatureError)
        try:
            cosigner.public_key.verify(blob[12:], cosignature_message(text, timestamp))
        except InvalidSignature as exc:
            raise CosignatureError(
                f"cosignature by {name} does not verify: the checkpoint or its time was altered"
            ) from exc
        if found is not None:
            raise CosignatureError(f"note carries two cosignatures by {name}")
        found = Cosignature(cosigner, timestamp, signature_line(name, blob))
    if found is None:
        raise CosignatureError(f"note carries no cosignature by {cosigner.name}")
    return found


def _join(text: str, signatures: list[tuple[str, bytes]]) -> str:
    lines = "".join(signature_line(n, blob) for n, blob in signatures)
    return f"{text}\n{lines}"


def _check_timestamp(timestamp: int, error: type[Exception]) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise error(f"cosignature time must be an integer, got {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise error(f"cosignature time must be in [0, 2**63), got {timestamp}")
