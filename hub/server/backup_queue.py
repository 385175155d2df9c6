"""The device's backup queue: which objects must reach the bucket, in order, kept in SQLite.

``backup.db`` in the data folder (WAL, ``synchronous=NORMAL``) holds one row per object name:
``queued`` until the store has acknowledged the whole object, then ``done``; ``skipped`` when it
will never go (its file was deleted first, or the queue was over its bound); ``deleted`` when
retention removed it from the bucket. A row is marked ``done`` only after the PUT returned, so a
SIGKILL or a power cut between the two re-uploads the object at the next start: uploads are
idempotent (content-addressed segments; manifests and checkpoints replace themselves with the
same or newer bytes). That is also why the queue does not fsync each change: WAL with
``synchronous=NORMAL`` survives a crash of the process whole, and what a power cut takes back (the
last changes) is harmless: a row marked done again is uploaded again, and a segment the queue
forgot is found in the clip store (written with ``synchronous=FULL``) by the scan at start.

The queue is filled from the clip store (segments as they are written, manifests as clips grow
and are sealed) and from the audit log (entries and checkpoints, by the uploader); it never holds
a copy of a segment, only its name and where the store keeps it.

One connection, used from worker threads one call at a time (the uploader's), guarded by a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackupQueue", "QueueItem", "QueueTotals"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS backup_objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    clip_id TEXT,
    path TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    queued_s REAL NOT NULL,
    done_s REAL
);
CREATE INDEX IF NOT EXISTS backup_objects_state ON backup_objects (state, seq);
CREATE INDEX IF NOT EXISTS backup_objects_clip ON backup_objects (clip_id);
CREATE TABLE IF NOT EXISTS backup_clips (
    clip_id TEXT PRIMARY KEY,
    end_s REAL,
    manifest_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS backup_state (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One object waiting for upload: its name, kind, clip and (for a segment) the file."""

    seq: int
    name: str
    kind: str  # segment, manifest (log: audit batches, recorded once uploaded)
    clip_id: str | None
    path: str | None
    size: int
    queued_s: float


@dataclass(frozen=True, slots=True)
class QueueTotals:
    """What ``GET /backup`` reports of the queue."""

    queued_objects: int
    queued_bytes: int
    oldest_queued_s: float | None
    done_objects: int
    done_bytes: int
    skipped_objects: int


class BackupQueue:
    """The queue in ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the queue's SQLite file."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # -- filling -----------------------------------------------------------------------------

    def known(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` the queue has a row for, in any state."""
        wanted = list(names)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0]
                    for row in self._db.execute(
                        f"SELECT name FROM backup_objects WHERE name IN ({marks})",  # noqa: S608
                        chunk,
                    )
                )
        return found

    def add_segment(self, name: str, clip_id: str, path: str, size: int, now_s: float) -> bool:
        """Queue a segment's file (``path`` relative to the data folder); False if known."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO backup_objects (name, kind, clip_id, path, size, queued_s) "
                "VALUES (?, 'segment', ?, ?, ?, ?)",
                (name, clip_id, path, size, now_s),
            )
            return cursor.rowcount == 1

    def add_manifest(
        self, name: str, clip_id: str, manifest_sha256: str, end_s: float | None, now_s: float
    ) -> bool:
        """Queue the clip's manifest behind everything queued so far, unless this very manifest
        (by its SHA-256) was queued before; True when it was queued."""
        with self._lock:
            row = self._db.execute(
                "SELECT manifest_sha256 FROM backup_clips WHERE clip_id = ?", (clip_id,)
            ).fetchone()
            if row is not None and row[0] == manifest_sha256:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO backup_clips (clip_id, end_s, manifest_sha256) VALUES (?, ?, ?) "
                    "ON CONFLICT (clip_id) DO UPDATE SET end_s = excluded.end_s, "
                    "manifest_sha256 = excluded.manifest_sha256",
                    (clip_id, end_s, manifest_sha256),
                )
                # A new seq puts it behind the segments queued before it.
                self._db.execute(
                    "DELETE FROM backup_objects WHERE name = ? AND state IN ('queued', 'done')",
                    (name,),
                )
                self._db.execute(
                    "INSERT OR IGNORE INTO backup_objects (name, kind, clip_id, queued_s) "
                    "VALUES (?, 'manifest', ?, ?)",
                    (name, clip_id, now_s),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    def uploaded(self, name: str) -> bool:
        """Whether ``name`` is in the store (uploaded, and not deleted since)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM backup_objects WHERE name = ? AND state = 'done'", (name,)
            ).fetchone()
        return row is not None

    def record_done(self, name: str, kind: str, now_s: float) -> None:
        """Record an object uploaded outside the queue's order (an audit log batch)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO backup_objects (name, kind, state, queued_s, done_s) "
                "VALUES (?, ?, 'done', ?, ?) ON CONFLICT (name) DO UPDATE SET state = 'done', "
                "done_s = excluded.done_s",
                (name, kind, now_s, now_s),
            )

    def done_names(self, kind: str) -> list[str]:
        """The names of the objects of ``kind`` that are in the bucket."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name FROM backup_objects WHERE kind = ? AND state = 'done' ORDER BY seq",
                (kind,),
            ).fetchall()
        return [row[0] for row in rows]

    def mark_name(self, name: str, state: str, now_s: float) -> None:
        """Mark the object called ``name`` (see :meth:`mark`)."""
        with self._lock:
            self._db.execute(
                "UPDATE backup_objects SET state = ?, done_s = ? WHERE name = ?",
                (state, now_s, name),
            )

    # -- draining ----------------------------------------------------------------------------

    def next(self) -> QueueItem | None:
        """The oldest queued object, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, name, kind, clip_id, path, size, queued_s FROM backup_objects "
                "WHERE state = 'queued' ORDER BY seq LIMIT 1"
            ).fetchone()
        return None if row is None else QueueItem(*row)

    def mark(self, item: QueueItem, state: str, now_s: float, *, size: int | None = None) -> None:
        """Mark ``item`` done, skipped or deleted (only if it is still the row that was read)."""
        if state not in ("done", "skipped", "deleted"):
            raise ValueError(f"unknown queue state {state!r}")
        with self._lock:
            self._db.execute(
                "UPDATE backup_objects SET state = ?, done_s = ?, size = COALESCE(?, size) "
                "WHERE seq = ?",
                (state, now_s, size, item.seq),
            )

    def queued_segments(self) -> list[QueueItem]:
        """Every queued segment, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, kind, clip_id, path, size, queued_s FROM backup_objects "
                "WHERE state = 'queued' AND kind = 'segment' ORDER BY seq"
            ).fetchall()
        return [QueueItem(*row) for row in rows]

    # -- retention ---------------------------------------------------------------------------

    def clips_ended_before(self, end_s: float) -> list[str]:
        """Clips with objects still in the bucket (or on their way) that ended before ``end_s``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.clip_id FROM backup_clips c WHERE c.end_s IS NOT NULL AND c.end_s < ? "
                "AND EXISTS (SELECT 1 FROM backup_objects o WHERE o.clip_id = c.clip_id "
                "AND o.state IN ('queued', 'done')) ORDER BY c.end_s",
                (end_s,),
            ).fetchall()
        return [row[0] for row in rows]

    def clip_objects(self, clip_id: str) -> list[QueueItem]:
        """The clip's objects that are queued or in the bucket."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, kind, clip_id, path, size, queued_s FROM backup_objects "
                "WHERE clip_id = ? AND state IN ('queued', 'done') ORDER BY seq",
                (clip_id,),
            ).fetchall()
        return [QueueItem(*row) for row in rows]

    # -- counters ----------------------------------------------------------------------------

    def get(self, name: str, default: int = 0) -> int:
        """A stored counter (such as how many audit entries are uploaded)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM backup_state WHERE name = ?", (name,)
            ).fetchone()
        return default if row is None else int(row[0])

    def put(self, name: str, value: int) -> None:
        """Store a counter."""
        with self._lock:
            self._db.execute(
                "INSERT INTO backup_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def totals(self) -> QueueTotals:
        """Counts and bytes by state, and when the oldest queued object was queued."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*), COALESCE(SUM(size), 0), MIN(queued_s) "
                "FROM backup_objects GROUP BY state"
            ).fetchall()
        by_state = {row[0]: row[1:] for row in rows}
        queued = by_state.get("queued", (0, 0, None))
        done = by_state.get("done", (0, 0, None))
        return QueueTotals(
            queued_objects=int(queued[0]),
            queued_bytes=int(queued[1]),
            oldest_queued_s=None if queued[2] is None else float(queued[2]),
            done_objects=int(done[0]),
            done_bytes=int(done[1]),
            skipped_objects=int(by_state.get("skipped", (0,))[0]),
        )
