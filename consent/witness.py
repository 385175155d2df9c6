"""An owner's phone as a witness of its device's audit log: cosign, and check the others' cosignatures.

Each phone checks the device's log against its own last checkpoint (``consent.audit_verify``), but
a device could show one log to one owner and another to the next, each consistent with itself. So
each phone cosigns (C2SP tlog-cosignature v1, ``consent._cosign``) the checkpoints it verified and
posts the cosignature to the device, which serves every owner's latest one. Before accepting a new
checkpoint a phone checks it against every cosigned checkpoint it is shown: the same size must have
the same root, and the device must prove consistency between the two sizes. A device that forked
its log cannot, and is caught as soon as one owner's phone sees another owner's cosignature.

The cosigner key is the owner's paired Ed25519 key, under the name ``doorward-owner/<key id>``:
other phones already know that key from the device's owner list (and owners can compare key ids in
person), whereas a separate witness key would need its own binding to the owner's identity, which
the device could withhold or swap. Reusing the key is safe because the cosigned message always
starts with ``cosignature/v1\\n``, which no other message an owner signs can: JWS signing inputs
are base64url text and RFC 9421 signature bases start with a quoted component name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent import _merkle
from consent._audit_errors import CosignatureError, ProofError, SplitView
from consent._cosign import add_cosignature, owner_cosigner, verify_cosignature
from consent._note import Checkpoint, NoteVerifier, open_checkpoint, split_note

__all__ = [
    "CosignedCheckpoint",
    "check_cosigned",
    "cosign",
    "open_cosigned",
    "proof_sizes",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CosignedCheckpoint:
    """A device-signed checkpoint that owner ``owner_key_id`` cosigned at ``timestamp`` (POSIX s)."""

    owner_key_id: str
    checkpoint: Checkpoint
    timestamp: int


def cosign(
    checkpoint_text: str, *, owner_key_id: str, signing_key: Ed25519PrivateKey, now: int
) -> str:
    """The signed checkpoint ``checkpoint_text`` with this owner's cosignature line added."""
    cosigner = owner_cosigner(owner_key_id, signing_key.public_key())
    return add_cosignature(checkpoint_text, cosigner.name, signing_key, now)


def open_cosigned(
    note: str | bytes, device: NoteVerifier, owners: Mapping[str, Ed25519PublicKey]
) -> list[CosignedCheckpoint]:
    """Verify the device's signature on ``note`` and the cosignature of every owner in ``owners``
    (key id → Ed25519 key) that it carries; lines of other keys are ignored."""
    checkpoint = open_checkpoint(note, device)
    _, signatures = split_note(note)
    names = {name for name, _ in signatures}
    found = []
    for key_id, public_key in sorted(owners.items()):
        cosigner = owner_cosigner(key_id, public_key)
        if cosigner.name not in names:
            continue
        try:
            cosignature = verify_cosignature(note, cosigner)
        except CosignatureError as exc:
            if str(exc).startswith("note carries no cosignature"):
                continue  # that name under another key: not this owner's, ignored
            raise
        found.append(CosignedCheckpoint(key_id, checkpoint, cosignature.timestamp))
    return found


def proof_sizes(mine: Checkpoint, other: Checkpoint) -> tuple[int, int] | None:
    """The (old, new) sizes of the consistency proof that relates two checkpoints; None when they
    have the same size (their roots must then be equal)."""
    if mine.size == other.size:
        return None
    return min(mine.size, other.size), max(mine.size, other.size)


def check_cosigned(
    mine: Checkpoint, other: CosignedCheckpoint, proof: Sequence[bytes] | None
) -> None:
    """Raise SplitView unless ``mine`` and the cosigned checkpoint are views of one log.

    ``proof`` is the device's consistency proof between their sizes (see :func:`proof_sizes`), or
    None when the device could not give one.
    """
    theirs = other.checkpoint
    who = f"owner {other.owner_key_id} cosigned a checkpoint of size {theirs.size}"
    if theirs.origin != mine.origin:
        raise SplitView(f"{who} of another log ({theirs.origin[:80]!r})")
    sizes = proof_sizes(mine, theirs)
    if sizes is None:
        if theirs.root_hash != mine.root_hash:
            raise SplitView(
                f"{who} with another root hash than this phone verified: the device shows "
                "different logs to different owners"
            )
        return
    if proof is None:
        raise SplitView(
            f"{who}, and the device cannot prove it consistent with the checkpoint of size "
            f"{mine.size} this phone verified: the device shows different logs to different owners"
        )
    old, new = (mine, theirs) if mine.size < theirs.size else (theirs, mine)
    try:
        _merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except ProofError as exc:
        raise SplitView(
            f"{who} that is not consistent with the checkpoint of size {mine.size} this phone "
            f"verified ({exc}): the device shows different logs to different owners"
        ) from exc
    logger.debug(
        "audit.cosigned_consistent owner=%s size=%d mine=%d",
        other.owner_key_id,
        theirs.size,
        mine.size,
    )
