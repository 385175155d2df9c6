"""Owner side (the phone) of the audit log: check the device's checkpoints, proofs and entries.

The phone keeps the last checkpoint it accepted and the Merkle frontier of the entries it verified
under it (the roots of the perfect subtrees that make up ``[0, size)``, at most 63 hashes). A new
checkpoint is accepted only with a consistency proof from the stored one, and only once the entries
that are new since then, read in pages, extend the frontier to the new root. So a device that
drops, edits or reorders entries it has already shown is caught on the next update, and each update
reads only what was appended since the last one. (A device showing different logs to different
phones is caught by the owners' cosignatures: ``consent.witness``.)

Typical use::

    verifier = AuditVerifier(device_public_key, origin, state_path=profile / "d.checkpoint")
    update = verifier.start_update(checkpoint_text, consistency_proof)
    while not update.complete:
        start, end = update.next_page()
        update.add_entries(fetch_entries(start, end))   # e.g. GET /audit/entries
    verifier.commit(update)                              # stores checkpoint and frontier

The frontier lives next to the checkpoint (``<state_path>.frontier``). Both are re-verified when
loaded: the checkpoint's device signature, and the frontier's fold against the checkpoint's root.

While it reads entries the verifier also indexes every ``clip.sealed`` entry (``<state_path>.seals``,
see ``consent._seal_index``): :meth:`AuditVerifier.sealed` gives approval the manifest hash each
clip was sealed with. A log that seals one clip with two different manifests fails the update
with ``SealConflict``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent import _merkle
from consent._audit_errors import (
    AuditStateCorrupt,
    EntriesTampered,
    LogInconsistent,
    ProofError,
    SealConflict,
)
from consent._note import Checkpoint, NoteVerifier, open_checkpoint
from consent._seal_index import SEALS_SUFFIX, SealIndex, seal_of
from consent.audit import MAX_ENTRIES_PER_READ, AuditEntry
from crypto.files import write_atomic

__all__ = ["FRONTIER_SUFFIX", "SEALS_SUFFIX", "AuditUpdate", "AuditVerifier", "Checkpoint"]

logger = logging.getLogger(__name__)

FRONTIER_SUFFIX = ".frontier"
_FRONTIER_VERSION = 1
_MAX_STATE_BYTES = 16 * 1024  # 63 base64 hashes and a size fit in 3 kB


class AuditUpdate:
    """A new checkpoint being checked against the entries it adds; see :meth:`AuditVerifier.start_update`.

    Feed entries in order from :attr:`next_index` with :meth:`add_entries` until :attr:`complete`,
    then hand it to :meth:`AuditVerifier.commit`.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        text: str,
        *,
        frontier: list[bytes],
        start: int,
        base: Checkpoint | None,
        stored: Checkpoint | None,
        seals: SealIndex,
    ) -> None:
        self.checkpoint = checkpoint
        self.checkpoint_text = text
        self.first_index = start
        self._frontier = frontier
        self._next = start
        # When the frontier of the stored checkpoint is unknown, reading starts at 0 and the
        # stored root is checked on the way past its size.
        self._base = base
        self._stored_prefix_checked = base is None or start >= base.size
        self._stored = stored  # what the verifier held when this update started
        self._finished = False
        self._index = seals
        # Seals first seen in this update: clip id -> (manifest hash, entry index).
        self._seals: dict[str, tuple[str, int]] = {}

    @property
    def next_index(self) -> int:
        """The index of the next entry to feed."""
        return self._next

    @property
    def fetched(self) -> int:
        """How many entries were fed so far."""
        return self._next - self.first_index

    @property
    def complete(self) -> bool:
        """Whether every entry up to the checkpoint's size was fed."""
        return self._next == self.checkpoint.size

    def next_page(self, limit: int = MAX_ENTRIES_PER_READ) -> tuple[int, int]:
        """The range ``[start, end)`` of at most ``limit`` entries to read next."""
        if limit < 1:
            raise ValueError(f"page limit must be at least 1, got {limit}")
        if self.complete:
            raise ValueError("every entry of this checkpoint was read already")
        return self._next, min(self.checkpoint.size, self._next + limit)

    def add_entries(self, entries: Sequence[AuditEntry | bytes]) -> None:
        """Feed the next entries (from :attr:`next_index` on; leaves or ``AuditEntry``)."""
        if self._finished:
            raise ValueError("this update was committed already")
        if not entries and not self.complete:
            raise EntriesTampered(
                f"the device served no entries from index {self._next} although its checkpoint "
                f"holds {self.checkpoint.size}: entries were dropped"
            )
        if self._next + len(entries) > self.checkpoint.size:
            raise EntriesTampered(
                f"the device served entries past the checkpoint's {self.checkpoint.size}: "
                "entries were inserted"
            )
        new_seals: list[str] = []
        for entry in entries:
            position = self._next
            if self._base is not None and position == self._base.size:
                self._check_stored_prefix()
            leaf, body = _leaf(entry, position)
            _merkle.extend_frontier(self._frontier, position, _merkle.leaf_hash(leaf))
            if body is not None and (seal := seal_of(body, position)) is not None:
                clip_id, digest = seal
                known = self._seals.get(clip_id)
                if known is None:
                    self._seals[clip_id] = (digest, position)
                    new_seals.append(clip_id)
                elif known[0] != digest:
                    raise _conflict(clip_id, known, (digest, position))
                # The same hash again (a seal delivered twice after a crash) changes nothing.
            self._next += 1
        # Against the seals of earlier updates: one lookup for the page, not one per seal.
        for clip_id, digest in self._index.sealed(new_seals).items():
            if digest != self._seals[clip_id][0]:
                earlier = self._index.get(clip_id)
                assert earlier is not None
                raise _conflict(clip_id, earlier, self._seals[clip_id])
        if self.complete:
            self._finish()

    def _finish(self) -> None:
        if self._base is not None and self._base.size == self._next:
            self._check_stored_prefix()
        if _merkle.fold_frontier(self._frontier) != self.checkpoint.root_hash:
            raise EntriesTampered(
                f"entries {self.first_index} to {self.checkpoint.size - 1} do not hash to the "
                "checkpoint's root: an entry was altered"
            )

    def _check_stored_prefix(self) -> None:
        assert self._base is not None
        _check_prefix(self._frontier, self._base)
        self._stored_prefix_checked = True


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
        self._frontier: list[bytes] | None = None
        self._seals = SealIndex(None if state_path is None else _seals_path(state_path))
        if last_checkpoint is None and state_path is not None and state_path.exists():
            last_checkpoint = state_path.read_text(encoding="utf-8")
        if last_checkpoint is not None:
            # Re-verified: a phone's stored state is no more trusted than what the device sends.
            self._last = open_checkpoint(last_checkpoint, self._verifier)
            self._last_text = last_checkpoint
            if self._last.size == 0:
                self._frontier = []
            elif state_path is not None:
                self._frontier = _load_frontier(_frontier_path(state_path), self._last)
            covered = self._seals.settle(self._last.size)
            if covered < self._last.size and self._frontier:
                # The seal index is behind the checkpoint (missing, or written before clips were
                # sealed): read the log from the start once to rebuild it.
                logger.info(
                    "audit.seals_rebuild origin=%s covered=%d size=%d",
                    origin,
                    covered,
                    self._last.size,
                )
                self._frontier = None

    @property
    def note_verifier(self) -> NoteVerifier:
        """The device's checkpoint key (name = the log's origin)."""
        return self._verifier

    def open_checkpoint(self, checkpoint_text: str) -> Checkpoint:
        """A checkpoint note the device signed, verified and parsed (nothing is stored)."""
        return open_checkpoint(checkpoint_text, self._verifier)

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The last accepted checkpoint, or None before the first update."""
        return self._last

    @property
    def last_checkpoint_text(self) -> str | None:
        """The signed note of the last accepted checkpoint."""
        return self._last_text

    def sealed(self, clip_ids: Iterable[str]) -> dict[str, str]:
        """Clip id -> the manifest SHA-256 (hex) the verified log sealed it with, for each of
        ``clip_ids`` that a ``clip.sealed`` entry up to the last accepted checkpoint names."""
        return self._seals.sealed(clip_ids)

    @property
    def verified_size(self) -> int:
        """How many entries the stored frontier covers (0 when it is unknown: read from the start)."""
        return 0 if self._frontier is None or self._last is None else self._last.size

    def start_update(self, checkpoint_text: str, consistency_proof: Sequence[bytes]) -> AuditUpdate:
        """Check a new checkpoint's signature and its consistency with the stored one, and return
        the update that its new entries must complete before :meth:`commit` stores it."""
        new = self._check_update(checkpoint_text, consistency_proof)
        if self._frontier is not None and self._last is not None:
            return AuditUpdate(
                new,
                checkpoint_text,
                frontier=list(self._frontier),
                start=self._last.size,
                base=None,
                stored=self._last,
                seals=self._seals,
            )
        return AuditUpdate(
            new,
            checkpoint_text,
            frontier=[],
            start=0,
            base=self._last,
            stored=self._last,
            seals=self._seals,
        )

    def commit(self, update: AuditUpdate) -> Checkpoint:
        """Store a complete update's clip seals, frontier and checkpoint (each atomically, in
        that order: a crash leaves at worst seals past the checkpoint, dropped when loading)."""
        if not update.complete or not update._stored_prefix_checked:
            raise ValueError(
                f"update is incomplete: {update.next_index} of {update.checkpoint.size} entries read"
            )
        if self._last is not update._stored:
            raise ValueError("the stored checkpoint changed since this update started")
        update._finished = True
        self._seals.save(update._seals, update.checkpoint.size)
        self._store(update.checkpoint_text, update.checkpoint, list(update._frontier))
        logger.info(
            "audit.checkpoint_accepted origin=%s size=%d read=%d",
            self._verifier.name,
            update.checkpoint.size,
            update.fetched,
        )
        return update.checkpoint

    def verify_update(self, checkpoint_text: str, consistency_proof: Sequence[bytes]) -> Checkpoint:
        """Accept a new checkpoint if it extends the stored one; store it and return it.

        ``consistency_proof`` goes from the stored checkpoint's size to the new one's (empty for
        the first checkpoint, or when the size did not change). Without its entries the stored
        frontier no longer matches, so the next update reads the log from the start.
        """
        new = self._check_update(checkpoint_text, consistency_proof)
        frontier = (
            self._frontier if self._last is not None and new.size == self._last.size else None
        )
        self._store(checkpoint_text, new, [] if new.size == 0 else frontier)
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
                _check_prefix(frontier, stored)
            _merkle.extend_frontier(
                frontier, position, _merkle.leaf_hash(_leaf(entry, position)[0])
            )
        if stored is not None and stored.size == len(entries):
            _check_prefix(frontier, stored)
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

    def _check_update(self, checkpoint_text: str, consistency_proof: Sequence[bytes]) -> Checkpoint:
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
        return new

    def _store(self, text: str, checkpoint: Checkpoint, frontier: list[bytes] | None) -> None:
        if self._state_path is not None:
            # Frontier first: a crash between the two writes leaves a frontier whose size is not
            # the stored checkpoint's, which loading treats as unknown (the log is re-read).
            path = _frontier_path(self._state_path)
            if frontier is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, _dump_frontier(checkpoint.size, frontier))
            write_atomic(self._state_path, text.encode("utf-8"))
        self._last, self._last_text, self._frontier = checkpoint, text, frontier


def _conflict(clip_id: str, one: tuple[str, int], other: tuple[str, int]) -> SealConflict:
    """Two seals (manifest hash, entry index) of one clip."""
    (first, i), (second, j) = sorted((one, other), key=lambda seal: seal[1])
    return SealConflict(
        f"the audit log seals clip {clip_id[:128]!r} twice, with manifest {first} at entry {i} "
        f"and {second} at entry {j}: a clip is sealed once, so the device re-signed its "
        "manifest; treat the device as compromised"
    )


def _frontier_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + FRONTIER_SUFFIX)


def _seals_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + SEALS_SUFFIX)


def _dump_frontier(size: int, frontier: list[bytes]) -> bytes:
    body = {
        "version": _FRONTIER_VERSION,
        "size": size,
        "frontier": [base64.b64encode(h).decode("ascii") for h in frontier],
    }
    return json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"


def _load_frontier(path: Path, checkpoint: Checkpoint) -> list[bytes] | None:
    """The stored frontier if it belongs to ``checkpoint``; None when there is none or it is
    stale; AuditStateCorrupt when it claims the checkpoint's size but does not fold to its root."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    corrupt = AuditStateCorrupt(
        f"{path} does not match the stored checkpoint of size {checkpoint.size}: the profile was "
        "altered outside doorward; delete that file to re-read and re-verify the whole log"
    )
    try:
        if len(raw) > _MAX_STATE_BYTES:
            raise ValueError("too large")
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("version") != _FRONTIER_VERSION:
            raise ValueError("not a frontier file")
        size, items = body["size"], body["frontier"]
        if isinstance(size, bool) or not isinstance(size, int) or not isinstance(items, list):
            raise ValueError("wrong types")
        hashes = [base64.b64decode(item, validate=True) for item in items]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise corrupt from exc
    if size != checkpoint.size:
        logger.warning(
            "audit.frontier_stale path=%s size=%s checkpoint_size=%d", path, size, checkpoint.size
        )
        return None
    if len(hashes) != bin(size).count("1") or any(len(h) != _merkle.HASH_SIZE for h in hashes):
        raise corrupt
    if _merkle.fold_frontier(hashes) != checkpoint.root_hash:
        raise corrupt
    return hashes


def _check_prefix(frontier: list[bytes], stored: Checkpoint) -> None:
    if _merkle.fold_frontier(frontier) != stored.root_hash:
        raise LogInconsistent(
            f"the first {stored.size} entries no longer hash to the checkpoint this phone "
            "stored: the device rewrote its history"
        )


def _leaf(entry: AuditEntry | bytes, position: int) -> tuple[bytes, dict[str, Any] | None]:
    """The entry's leaf bytes and JSON body (None when the leaf is not a JSON object)."""
    leaf = entry.leaf if isinstance(entry, AuditEntry) else entry
    claimed = entry.index if isinstance(entry, AuditEntry) else position
    body = _leaf_body(leaf)
    index = body.get("index") if body is not None else None
    if claimed != position or not isinstance(index, int) or index != position:
        raise EntriesTampered(
            f"entry at position {position} claims another index: "
            "entries were reordered, dropped or inserted"
        )
    return leaf, body


def _leaf_body(leaf: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(leaf)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        return None
    return body if isinstance(body, dict) else None
