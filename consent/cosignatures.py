"""The device's book of owner cosignatures: the latest checkpoint each owner's phone cosigned.

Phones post a checkpoint the device signed with their cosignature line added (``consent.witness``);
the device checks that it signed that tree (same size, same root as its own log), that the line is
the posting owner's and verifies, and that it is not older than the one it holds for that owner.
It keeps one note per owner (its own signature plus that owner's line) in table
``audit_cosignatures`` of the audit database, and serves them grouped by checkpoint, each note
with the lines of every owner who cosigned that same checkpoint.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent._audit_errors import CheckpointError, CosignatureError
from consent._cosign import owner_cosigner, verify_cosignature
from consent._db import open_db
from consent._note import MAX_SIGNATURES, open_checkpoint, signature_line, split_note
from consent.audit import AuditLog

__all__ = ["CosignatureBook", "CosignatureRecord"]

logger = logging.getLogger(__name__)

_FUTURE_SLACK_S = 300  # phones' clocks drift; a cosignature from further ahead is refused
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    owner_key_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    time INTEGER NOT NULL,
    note TEXT NOT NULL,
    received_s INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class CosignatureRecord:
    """An owner's latest cosignature: tree ``size``, cosigning ``time`` (POSIX s) and the note
    (the device's signature and the owner's line)."""

    owner_key_id: str
    size: int
    time: int
    note: str


class CosignatureBook:
    """Owners' latest cosigned checkpoints of this device's log. Thread-safe (one lock)."""

    def __init__(self, db: sqlite3.Connection | Path | str, *, log: AuditLog) -> None:
        self._lock = threading.Lock()
        self._db, self._owns_db = open_db(db)
        self._db.execute(_SCHEMA)
        self._log = log

    def record(
        self, note: str, *, owner_key_id: str, owner_key: Ed25519PublicKey, now: int
    ) -> CosignatureRecord:
        """Keep ``owner_key_id``'s cosignature on ``note`` as its latest; raise CheckpointError
        (or CosignatureError) if the note is not this log's, the line not the owner's, or older."""
        checkpoint = open_checkpoint(note, self._log.note_verifier)
        size = self._log.size
        if checkpoint.size > size or self._log.root(checkpoint.size) != checkpoint.root_hash:
            raise CheckpointError(
                f"this device never signed a tree of size {checkpoint.size} with that root hash; "
                "cosign a checkpoint fetched from GET /audit/checkpoint"
            )
        cosignature = verify_cosignature(note, owner_cosigner(owner_key_id, owner_key))
        if cosignature.timestamp > now + _FUTURE_SLACK_S:
            raise CosignatureError(
                f"cosignature time {cosignature.timestamp} is ahead of the device's clock ({now}); "
                "check the phone's clock"
            )
        text, _ = split_note(note)
        kept = text + "\n" + self._device_line(note) + cosignature.line
        with self._lock:
            row = self._db.execute(
                "SELECT size, time FROM audit_cosignatures WHERE owner_key_id = ?", (owner_key_id,)
            ).fetchone()
            if row is not None and (checkpoint.size < row[0] or cosignature.timestamp < row[1]):
                raise CosignatureError(
                    f"owner {owner_key_id} already cosigned a tree of size {row[0]} at {row[1]}; "
                    f"a cosignature of size {checkpoint.size} at {cosignature.timestamp} is older"
                )
            self._db.execute(
                "INSERT OR REPLACE INTO audit_cosignatures VALUES (?, ?, ?, ?, ?)",
                (owner_key_id, checkpoint.size, cosignature.timestamp, kept, now),
            )
        logger.info(
            "audit.cosigned owner=%s size=%d time=%d",
            owner_key_id,
            checkpoint.size,
            cosignature.timestamp,
        )
        return CosignatureRecord(owner_key_id, checkpoint.size, cosignature.timestamp, kept)

    def latest(self, owners: Collection[str]) -> list[CosignatureRecord]:
        """The latest cosignature of each of ``owners`` that has one, largest tree first; each
        note carries the lines of every one of ``owners`` who cosigned the same checkpoint."""
        records = self._records(owners)
        lines: dict[str, list[str]] = {}
        for record in records:
            text, _ = split_note(record.note)
            lines.setdefault(text, []).append(_last_line(record.note))
        result = []
        for record in records:
            text, _ = split_note(record.note)
            others = lines[text][: MAX_SIGNATURES - 1]
            note = text + "\n" + self._device_line(record.note) + "".join(others)
            result.append(CosignatureRecord(record.owner_key_id, record.size, record.time, note))
        return result

    def attach(self, checkpoint_note: str, owners: Collection[str]) -> str:
        """``checkpoint_note`` with the cosignature lines of ``owners`` who cosigned exactly it."""
        text, signatures = split_note(checkpoint_note)
        extra = [_last_line(r.note) for r in self._records(owners) if split_note(r.note)[0] == text]
        return checkpoint_note + "".join(extra[: MAX_SIGNATURES - len(signatures)])

    def close(self) -> None:
        """Close the database connection if this book opened it."""
        if self._owns_db:
            self._db.close()

    def _records(self, owners: Collection[str]) -> list[CosignatureRecord]:
        """The stored notes (device line, then the owner's own line) of ``owners``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT owner_key_id, size, time, note FROM audit_cosignatures "
                "ORDER BY size DESC, owner_key_id"
            ).fetchall()
        return [CosignatureRecord(*row) for row in rows if row[0] in owners]

    def _device_line(self, note: str) -> str:
        verifier = self._log.note_verifier
        for name, blob in split_note(note)[1]:
            if name == verifier.name and blob[:4] == verifier.key_id:
                return signature_line(name, blob)
        raise CheckpointError("note is not signed by this device")


def _last_line(note: str) -> str:
    return note[note.rstrip("\n").rfind("\n") + 1 :]
