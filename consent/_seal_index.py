"""The phone's index of clip seals: for each clip, the manifest hash of the ``clip.sealed`` entry
in the part of the device's audit log this phone verified.

A device signs a clip's manifest one last time when the clip finishes and logs that manifest's
SHA-256 (``clip.sealed``). Once a phone has verified a checkpoint past that entry, the device cannot
take it back; so a device compromised later cannot re-sign the clip's manifest with its segments
relabelled without the phone noticing: approval compares the manifest it is served with the one
sealed here.

The index lives next to the checkpoint (``<state_path>.seals``, SQLite). Each row keeps the index
of the entry it came from, and the file records the tree size it was built up to. It is written
first when an update is committed (then the frontier, then the checkpoint), so after a crash it
may be ahead of the stored checkpoint: loading drops the rows past the checkpoint's size. When it
is behind (missing, or a profile from before clip sealing), the verifier re-reads the log from the
start to rebuild it. So the index never holds a seal the phone has not verified, and is re-derived
from the log whenever it could be out of step.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from consent._audit_errors import AuditError, AuditStateCorrupt, SealConflict

__all__ = ["SEALS_SUFFIX", "SealIndex", "seal_of"]

SEALS_SUFFIX = ".seals"
SEALED_KIND = "clip.sealed"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MAX_CLIP_ID = 128
_LOOKUP_BATCH = 500
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seals (clip_id TEXT PRIMARY KEY, "
    "manifest_sha256 TEXT NOT NULL, entry_index INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS covered (one INTEGER PRIMARY KEY CHECK (one = 1), "
    "size INTEGER NOT NULL)",
)


def seal_of(body: Mapping[str, Any], position: int) -> tuple[str, str] | None:
    """``(clip_id, manifest_sha256)`` of a ``clip.sealed`` entry, None for any other kind;
    SealConflict for a seal the phone cannot read (it could not hold the device to it)."""
    if body.get("kind") != SEALED_KIND:
        return None
    clip_id, digest = body.get("clip_id"), body.get("manifest_sha256")
    if (
        not isinstance(clip_id, str)
        or not 0 < len(clip_id) <= _MAX_CLIP_ID
        or not isinstance(digest, str)
        or not _SHA256_RE.fullmatch(digest)
    ):
        raise SealConflict(
            f"audit entry {position} is a clip.sealed entry without a clip id and a lowercase "
            "hex SHA-256 of its manifest: the device wrote a seal no phone can check"
        )
    return clip_id, digest


class SealIndex:
    """Clip id → (manifest SHA-256, entry index), in a SQLite file or (``path`` None) in memory."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._memory: dict[str, tuple[str, int]] = {}
        self._memory_size = 0

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None when the index is kept in memory only."""
        return self._path

    def settle(self, size: int) -> int:
        """Drop the rows of entries at or past ``size`` (an update that was not committed) and
        return the tree size the index covers now (less than ``size``: it must be rebuilt)."""
        if self._path is None:
            self._memory = {k: v for k, v in self._memory.items() if v[1] < size}
            self._memory_size = min(self._memory_size, size)
            return self._memory_size
        if not self._path.exists():
            return 0
        with self._db() as db:
            covered = self._covered(db)
            if covered > size:
                db.execute("DELETE FROM seals WHERE entry_index >= ?", (size,))
                db.execute("UPDATE covered SET size = ?", (size,))
                covered = size
        return covered

    def get(self, clip_id: str) -> tuple[str, int] | None:
        """The clip's sealed manifest hash and the entry that sealed it, if it was sealed."""
        if self._path is None:
            return self._memory.get(clip_id)
        if not self._path.exists():
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT manifest_sha256, entry_index FROM seals WHERE clip_id = ?", (clip_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def sealed(self, clip_ids: Iterable[str]) -> dict[str, str]:
        """Clip id → sealed manifest hash, for those of ``clip_ids`` that were sealed."""
        wanted = list(dict.fromkeys(clip_ids))
        if not wanted:
            return {}
        if self._path is None:
            return {c: self._memory[c][0] for c in wanted if c in self._memory}
        if not self._path.exists():
            return {}
        found: dict[str, str] = {}
        with self._db() as db:
            for start in range(0, len(wanted), _LOOKUP_BATCH):
                batch = wanted[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT clip_id, manifest_sha256 FROM seals WHERE clip_id IN ({marks})",  # noqa: S608
                    batch,
                )
                found.update((str(c), str(h)) for c, h in rows)
        return found

    def save(self, seals: Mapping[str, tuple[str, int]], size: int) -> None:
        """Add ``seals`` (checked against the index already) and record that the index now
        covers the first ``size`` entries, in one transaction."""
        if self._path is None:
            for clip_id, seal in seals.items():
                self._memory.setdefault(clip_id, seal)
            self._memory_size = size
            return
        with self._db(create=True) as db:
            db.executemany(
                "INSERT OR IGNORE INTO seals (clip_id, manifest_sha256, entry_index) "
                "VALUES (?, ?, ?)",
                [(clip_id, digest, index) for clip_id, (digest, index) in seals.items()],
            )
            db.execute("INSERT OR REPLACE INTO covered (one, size) VALUES (1, ?)", (size,))

    def _covered(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT size FROM covered").fetchone()
        if row is None:
            return 0
        size = row[0]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise self._corrupt()
        return size

    @contextlib.contextmanager
    def _db(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (committed when the block ends without error)."""
        assert self._path is not None
        if create and not self._path.exists():
            # Profile files are the owner's alone; SQLite's journal takes the file's mode.
            os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            with contextlib.closing(sqlite3.connect(self._path)) as db:
                db.execute("PRAGMA synchronous=FULL")
                for statement in _SCHEMA:
                    db.execute(statement)
                with db:
                    yield db
        except sqlite3.OperationalError as exc:  # locked, unreadable, disk full
            raise AuditError(f"cannot use the clip seal index {self._path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise self._corrupt() from exc

    def _corrupt(self) -> AuditStateCorrupt:
        return AuditStateCorrupt(
            f"{self._path} is not the clip seal index doorward writes: the profile was altered "
            "outside doorward; delete that file to re-read the whole log and rebuild it"
        )
