"""Owner side (the phone) of the audit log: check the device's checkpoints, proofs and entries.

The phone keeps the last checkpoint it accepted. A new checkpoint is accepted only with a
consistency proof from the stored one, so a device that drops, edits or reorders entries it has
already shown — or shows different logs to different phones — is caught on its next update.

Typical use::

    verifier = AuditVerifier(device_public_key, origin, state_path=profile / "audit.checkpoint")
    new = verifier.verify_update(checkpoint_text, consistency_proof)   # accept the new tree head
    verifier.verify_entries(entries, checkpoint_text)                   # and check what it holds
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent import _merkle
from consent._audit_errors import EntriesTampered, LogInconsistent, ProofError
from consent._note import Checkpoint, NoteVerifier, open_checkpoint
from consent.audit import AuditEntry
from crypto.files import write_atomic

__all__ = ["AuditVerifier"]

logger = logging.getLogger(__name__)


class AuditVerifier:
    """Checks one device's audit log against the last checkpoint this phone accepted.

    Single-owner: use one instance from one thread.
    """

    def __init__(
        self,
        device_public_key: Ed25519PublicKey,
        origin: str,
        *,
        state_path: Path | None = None,
        last_checkpoint: str | None = None,
    ) -> None:
        self._verifier = NoteVerifier(origin, device_public_key)
        self._state_path = state_path
        self._last: Checkpoint | None = None
        self._last_text: str | None = None
        if last_checkpoint is None and state_path is not None and state_path.exists():
            last_checkpoint = state_path.read_text(encoding="utf-8")
        if last_checkpoint is not None:
            # Re-verified: a phone's stored state is no more trusted than what the device sends.
            self._last = open_checkpoint(last_checkpoint, self._verifier)
            self._last_text = last_checkpoint

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The last accepted checkpoint, or None before the first update."""
        return self._last

    @property
    def last_checkpoint_text(self) -> str | None:
        """The signed note of the last accepted checkpoint."""
        return self._last_text

    def verify_update(self, checkpoint_text: str, consistency_proof: Sequence[bytes]) -> Checkpoint:
        """Accept a new checkpoint if it extends the stored one; store it and return it.

        ``consistency_proof`` goes from the stored checkpoint's size to the new one's (empty for
        the first checkpoint, or when the size did not change).
        """
        new = open_checkpoint(checkpoint_text, self._verifier)
        old = self._last
        if old is not None:
            if new.size < old.size:
                raise LogInconsistent(
                    f"device log shrank from {old.size} to {new.size} entries: it was rolled back"
                )
            try:
                _merkle.verify_consistency(
                    old.size, new.size, old.root_hash, new.root_hash, consistency_proof
                )
            except ProofError as exc:
                raise LogInconsistent(
                    f"checkpoint of size {new.size} does not extend the stored checkpoint of size "
                    f"{old.size}: the device's log forked or was rewritten ({exc})"
                ) from exc
        elif consistency_proof:
            raise ProofError("the first checkpoint takes an empty consistency proof")
        self._store(checkpoint_text, new)
        logger.info("audit.checkpoint_accepted origin=%s size=%d", self._verifier.name, new.size)
        return new

    def verify_entries(
        self, entries: Sequence[AuditEntry | bytes], checkpoint_text: str
    ) -> Checkpoint:
        """Check that ``entries`` (all of them, from index 0) hash to the signed checkpoint.

        When a checkpoint is stored, the new one may not be smaller and the entries' prefix must
        still hash to the stored root; the stored checkpoint is not replaced.
        """
        checkpoint = open_checkpoint(checkpoint_text, self._verifier)
        stored = self._last
        if stored is not None and checkpoint.size < stored.size:
            raise LogInconsistent(
                f"checkpoint of size {checkpoint.size} is older than the stored one of size "
                f"{stored.size}: the device rolled its log back"
            )
        if len(entries) != checkpoint.size:
            raise EntriesTampered(
                f"{len(entries)} entries served for a checkpoint of {checkpoint.size}: "
                "entries were dropped or inserted"
            )
        frontier: list[bytes] = []
        for position, entry in enumerate(entries):
            if stored is not None and position == stored.size:
                self._check_stored_prefix(frontier, stored)
            leaf = entry.leaf if isinstance(entry, AuditEntry) else entry
            claimed = entry.index if isinstance(entry, AuditEntry) else position
            if claimed != position or _leaf_index(leaf) != position:
                raise EntriesTampered(
                    f"entry at position {position} claims another index: "
                    "entries were reordered, dropped or inserted"
                )
            _merkle.extend_frontier(frontier, position, _merkle.leaf_hash(leaf))
        if stored is not None and stored.size == len(entries):
            self._check_stored_prefix(frontier, stored)
        if _merkle.fold_frontier(frontier) != checkpoint.root_hash:
            raise EntriesTampered(
                f"the {checkpoint.size} entries do not hash to the checkpoint's root: "
                "an entry was altered"
            )
        return checkpoint

    def verify_inclusion(
        self, leaf: bytes, index: int, proof: Sequence[bytes], checkpoint_text: str
    ) -> Checkpoint:
        """Check that ``leaf`` is entry ``index`` of the signed checkpoint's tree."""
        checkpoint = open_checkpoint(checkpoint_text, self._verifier)
        _merkle.verify_inclusion(
            _merkle.leaf_hash(leaf), index, checkpoint.size, proof, checkpoint.root_hash
        )
        return checkpoint

    def _check_stored_prefix(self, frontier: list[bytes], stored: Checkpoint) -> None:
        if _merkle.fold_frontier(frontier) != stored.root_hash:
            raise LogInconsistent(
                f"the first {stored.size} entries no longer hash to the checkpoint this phone "
                "stored: the device rewrote its history"
            )

    def _store(self, text: str, checkpoint: Checkpoint) -> None:
        if self._state_path is not None:
            write_atomic(self._state_path, text.encode("utf-8"))
        self._last, self._last_text = checkpoint, text


def _leaf_index(leaf: bytes) -> int | None:
    try:
        body = json.loads(leaf)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        return None
    index = body.get("index") if isinstance(body, dict) else None
    return index if isinstance(index, int) else None
