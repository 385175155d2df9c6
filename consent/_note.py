"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, and tlog checkpoints (c2sp.org/tlog-checkpoint).

A signed note is its text (ending in a newline), a blank line, then signature lines
``— <key name> <base64(key ID || signature)>``. The key ID of an Ed25519 key is the first four
bytes of SHA-256(name || 0x0A || 0x01 || public key). A checkpoint is a note whose text is the
log's origin, its decimal tree size and its base64 root hash, then optional extension lines.

Verification follows the spec: signatures by unknown keys are ignored, a signature by the known
key that fails rejects the whole note, and a note with no good signature by the known key is
rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent._audit_errors import CheckpointError

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "NoteVerifier",
    "check_key_name",
    "note_key_id",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "signature_line",
    "signer_key_id",
    "split_note",
    "verifier_key",
]

# The spec asks verifiers to accept at least 16 signatures, each up to ~5 kB for post-quantum
# algorithms; these caps keep a hostile device from making a phone parse megabytes. A cosigned
# checkpoint carries the device's signature and at most one cosignature per owner (32 at most).
MAX_NOTE_BYTES = 128 * 1024
MAX_SIGNATURES = 40
_ED25519 = 0x01
_ROOT_BYTES = 32
MAX_TREE_SIZE = (1 << 63) - 1
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")
_DASH = "\u2014 "


def note_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return signer_key_id(name, _ED25519, public_key)


def signer_key_id(name: str, signature_type: int, public_key: Ed25519PublicKey) -> bytes:
    """A signed-note key ID: SHA-256(name || 0x0A || signature type || public key)[:4]."""
    material = name.encode() + b"\n" + bytes([signature_type]) + public_key.public_bytes_raw()
    return hashlib.sha256(material).digest()[:4]


def verifier_key(name: str, signature_type: int, public_key: Ed25519PublicKey) -> str:
    """A signed-note verifier key: ``<name>+<hex key ID>+<base64(signature type || key)>``."""
    key_id = signer_key_id(name, signature_type, public_key)
    material = bytes([signature_type]) + public_key.public_bytes_raw()
    return f"{name}+{key_id.hex()}+{base64.b64encode(material).decode()}"


def signature_line(name: str, blob: bytes) -> str:
    """A note's signature line: ``— <key name> <base64(key ID || signature)>`` and a newline."""
    return f"{_DASH}{name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """An Ed25519 note verifier key: ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""

    name: str
    public_key: Ed25519PublicKey = field(compare=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        object.__setattr__(self, "key_id", note_key_id(self.name, self.public_key))

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        """Parse a verifier key string; the key ID must match the name and key."""
        name, _, rest = text.partition("+")
        key_hash, _, material = rest.partition("+")
        if not re.fullmatch(r"[0-9a-f]{8}", key_hash):
            raise CheckpointError("verifier key must be <name>+<8 hex digits>+<base64 key>")
        raw = _b64decode(material, "verifier key material")
        if len(raw) != 33 or raw[0] != _ED25519:
            raise CheckpointError("verifier key must hold an Ed25519 key (type 0x01, 32 bytes)")
        try:
            check_key_name(name)
        except ValueError as exc:
            raise CheckpointError(f"verifier key name is invalid: {exc}") from exc
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id.hex() != key_hash:
            raise CheckpointError(f"verifier key ID {key_hash} does not match its name and key")
        return verifier

    def __str__(self) -> str:
        return verifier_key(self.name, _ED25519, self.public_key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (which must end in a newline) as key ``name``; return the whole note."""
    check_key_name(name)
    _check_note_chars(text)
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    key_id = note_key_id(name, key.public_key())
    signature = key.sign(text.encode())
    return f"{text}\n{signature_line(name, key_id + signature)}"


def open_note(note: str | bytes, verifier: NoteVerifier) -> str:
    """Return the text of ``note`` if ``verifier``'s key signed it; raise CheckpointError otherwise."""
    text, signatures = split_note(note)
    verified = False
    for name, blob in signatures:
        if name != verifier.name or blob[:4] != verifier.key_id:
            continue  # an unknown key: ignored, per the spec
        try:
            verifier.public_key.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise CheckpointError(
                f"note signature by {name} does not verify: the note was altered"
            ) from exc
        verified = True
    if not verified:
        raise CheckpointError(f"note is not signed by {verifier.name}+{verifier.key_id.hex()}")
    return text


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ValueError(f"origin must be one non-empty line, got {self.origin!r}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size must be in [0, 2**63), got {self.size}")
        if len(self.root_hash) != _ROOT_BYTES:
            raise ValueError(f"root hash must be {_ROOT_BYTES} bytes, got {len(self.root_hash)}")
        for line in self.extensions:
            if not line or "\n" in line:
                raise ValueError(f"extension lines must be non-empty single lines, got {line!r}")

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly; raise CheckpointError on any deviation."""
        _check_note_chars(text, CheckpointError)
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint must have at least 3 lines, got {len(lines)}")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise CheckpointError("checkpoint origin line must not be empty")
        if not _SIZE_RE.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
            raise CheckpointError(
                "checkpoint tree size must be a decimal below 2**63 without leading zeros, "
                f"got {size_text[:24]!r}"
            )
        root = _b64decode(root_text, "checkpoint root hash")
        if len(root) != _ROOT_BYTES:
            raise CheckpointError(f"checkpoint root hash must be {_ROOT_BYTES} bytes")
        for number, line in enumerate(extensions, start=4):
            if not line:
                raise CheckpointError(f"checkpoint line {number} (an extension) must not be empty")
        return cls(origin, int(size_text), root, tuple(extensions))

    def text(self) -> str:
        """The note text: origin, size and base64 root hash lines, extensions, final newline."""
        root = base64.b64encode(self.root_hash).decode()
        return "\n".join([self.origin, str(self.size), root, *self.extensions]) + "\n"


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    """Sign a checkpoint as a note whose key name is its origin."""
    return sign_note(checkpoint.text(), checkpoint.origin, key)


def open_checkpoint(note: str | bytes, verifier: NoteVerifier) -> Checkpoint:
    """Verify a signed checkpoint by ``verifier`` and parse it; its origin must be the key name."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise CheckpointError(
            f"checkpoint origin {checkpoint.origin[:80]!r} is not {verifier.name!r}: "
            "it comes from another log"
        )
    return checkpoint


def split_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """A signed note's text and its signatures as (key name, key ID || signature) pairs, parsed
    strictly but not verified."""
    try:
        raw = note.encode() if isinstance(note, str) else note
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise CheckpointError("note is not valid UTF-8") from exc
    if len(raw) > MAX_NOTE_BYTES:
        raise CheckpointError(f"note is longer than {MAX_NOTE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError("note is not valid UTF-8") from exc
    _check_note_chars(text, CheckpointError)
    if not text.endswith("\n"):
        raise CheckpointError("note must end with a newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_DASH):
            raise CheckpointError(f"note signature line {number} must start with '\u2014 '")
        name, _, blob_text = line[len(_DASH) :].partition(" ")
        try:
            check_key_name(name)
        except ValueError as exc:
            raise CheckpointError(f"note signature line {number}: {exc}") from exc
        blob = _b64decode(blob_text, f"note signature line {number}")
        if len(blob) < 5:
            raise CheckpointError(f"note signature line {number} is too short")
        signatures.append((name, blob))
    return body, signatures


def check_key_name(name: str, what: str = "key name") -> None:
    """A signed-note key name is non-empty, without spaces or '+'; ValueError names ``what``."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError(f"{what} must be non-empty without spaces or '+', got {name[:80]!r}")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be UTF-8 text, got {name[:80]!r}") from None


def _check_note_chars(text: str, error: type[Exception] = ValueError) -> None:
    for ch in text:
        if ch < " " and ch != "\n":
            raise error(f"note must not contain control character U+{ord(ch):04X}")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): padding required, no stray characters."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw
