"""The phone's audit of a device's log: new entries in pages, other owners' cosignatures, its own.

:func:`check_audit` is what ``doorward owner audit`` runs:

1. fetch the device's checkpoint and a consistency proof from the one this profile stored;
2. read the entries appended since then, in pages of at most ``MAX_ENTRIES_PER_READ``, and check
   that they extend the stored frontier to the new root (``consent.audit_verify``);
3. check the new checkpoint against every current owner's cosigned checkpoint, with consistency
   proofs from the device (``consent.witness``): a device showing owners different logs cannot
   give them, and the audit fails with ``SplitView``;
4. store the checkpoint and frontier, then cosign the checkpoint and post the cosignature.

Nothing is stored unless every check passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent import (
    MAX_ENTRIES_PER_READ,
    AuditUpdate,
    AuditVerifier,
    CosignedCheckpoint,
)
from consent.witness import check_cosigned, cosign, open_cosigned, proof_sizes
from crypto.errors import DoorwardError
from crypto.keys import key_id, load_ed25519_public
from hub.client.api import ApiError, DoorwardClient
from hub.client.records import OwnerInfo

__all__ = ["AuditReport", "Cosigner", "check_audit"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A current owner and its latest cosignature as the device served it (None: it has none)."""

    key_id: str
    name: str
    size: int | None
    time_s: int | None


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit found: the verified ``size`` (was ``previous_size``), the entries read (from
    ``first_index`` on), each current owner's latest cosignature, and the one posted."""

    size: int
    previous_size: int
    first_index: int
    leaves: tuple[bytes, ...] = field(repr=False)
    cosigners: tuple[Cosigner, ...]
    cosigned_size: int


async def check_audit(
    api: DoorwardClient,
    verifier: AuditVerifier,
    *,
    signing_key: Ed25519PrivateKey,
    now: int,
    page: int = MAX_ENTRIES_PER_READ,
) -> AuditReport:
    """Audit the device behind ``api`` against ``verifier``'s stored state (see the module doc);
    raises an ``AuditError`` (``SplitView`` among them) and stores nothing if a check fails."""
    old = verifier.last_checkpoint
    previous = old.size if old is not None else 0
    checkpoint = await api.audit_checkpoint()
    size = verifier.open_checkpoint(checkpoint).size
    proof = await api.consistency_proof(previous, size) if 0 < previous < size else []
    update = verifier.start_update(checkpoint, proof)
    leaves: list[bytes] = []
    while not update.complete:
        start, end = update.next_page(page)
        entries = await api.audit_entries(start, end)
        update.add_entries(entries.leaves)
        leaves.extend(entries.leaves)
    owners = {o.key_id: o for o in await api.owners() if o.removed_s is None}
    keys = {kid: key for kid, o in owners.items() if (key := _owner_key(o)) is not None}
    latest: dict[str, tuple[int, int]] = {}
    checked: set[tuple[int, bytes]] = set()
    for record in await api.audit_cosignatures():
        for other in open_cosigned(record.checkpoint, verifier.note_verifier, keys):
            seen = latest.get(other.owner_key_id)
            if seen is None or other.checkpoint.size > seen[0]:
                latest[other.owner_key_id] = (other.checkpoint.size, other.timestamp)
            position = (other.checkpoint.size, other.checkpoint.root_hash)
            if position not in checked:
                await _check_one(api, update, other)
                checked.add(position)
    accepted = verifier.commit(update)
    me = key_id(signing_key.public_key())
    posted = await api.post_cosignature(
        cosign(update.checkpoint_text, owner_key_id=me, signing_key=signing_key, now=now)
    )
    latest[me] = (posted.size, posted.time_s)
    cosigners = tuple(
        Cosigner(kid, o.name, *latest.get(kid, (None, None))) for kid, o in sorted(owners.items())
    )
    return AuditReport(
        accepted.size, previous, update.first_index, tuple(leaves), cosigners, posted.size
    )


async def _check_one(api: DoorwardClient, update: AuditUpdate, other: CosignedCheckpoint) -> None:
    mine = update.checkpoint
    sizes = proof_sizes(mine, other.checkpoint)
    proof = None
    if sizes is not None:
        try:
            proof = await api.consistency_proof(*sizes)
        except ApiError as exc:
            logger.warning(
                "audit.no_consistency_proof owner=%s sizes=%s code=%s",
                other.owner_key_id,
                sizes,
                exc.code,
            )
    check_cosigned(mine, other, proof)


def _owner_key(owner: OwnerInfo) -> Ed25519PublicKey | None:
    """The owner's signing key, if the device gave one that matches its key id."""
    try:
        key = load_ed25519_public(owner.ed25519)
    except DoorwardError:
        return None
    if key_id(key) != owner.key_id:
        logger.warning("audit.owner_key_mismatch owner=%s", owner.key_id)
        return None
    return key
