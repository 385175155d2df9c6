"""The clip store: SQLite (WAL) rows plus encrypted segment files and a signed manifest per clip.

Layout under ``data_dir``::

    doorward.db
    clips/<camera>/<YYYY-MM-DD>/<clip-id>/seg-000000.ts.age …  manifest.json

A segment exists once its row is committed. Writing one is: temp file, fsync, rename, fsync of the
directory, row insert, manifest rewrite. :meth:`ClipStore.recover` (run at open) makes files and rows
agree after a crash: temp files are removed; rows whose file is missing or has the wrong size are
dropped; segment files without a row are removed (they were never acknowledged, and their times are
unknown, so they are not adopted); directories of unknown clips are removed; unfinished clips are
closed at the end of their last segment (or dropped when they have none) and their manifests re-signed.

Sealing: when a clip finishes, its manifest is signed one last time and handed to ``on_sealed``
(the audit log's ``clip.sealed`` entry, with the manifest's SHA-256), so that a phone can later tell
the manifest it is served from the one the device signed back then. A sealed clip's manifest is
never rewritten (recovery keeps it even if a segment file went missing). A clip whose seal was not
delivered (a crash or a failing listener between the two, or a clip finished by an older version)
is sealed again by :meth:`ClipStore.recover`; the manifest bytes are the same, so is the hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from consent.clip_manifest import MANIFEST_NAME, ClipManifest
from consent.clips import segment_id_for
from crypto.errors import DoorwardError
from crypto.files import TEMP_SUFFIX, write_atomic
from crypto.keys import DeviceIdentity
from device._files import SegmentFile, SegmentSink
from device.errors import ClipHeld, StoreError

__all__ = ["ClipRecord", "ClipSeal", "ClipStore", "SegmentRecord"]

logger = logging.getLogger(__name__)

_CAMERA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SEGMENT_RE = re.compile(r"seg-(\d{6})\.ts\.age")
_MAX_LIST = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    clip_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL,
    finished INTEGER NOT NULL DEFAULT 0,
    rel_dir TEXT NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS clips_camera_start ON clips (camera, start_s);
CREATE TABLE IF NOT EXISTS segments (
    segment_id TEXT PRIMARY KEY,
    clip_id TEXT NOT NULL REFERENCES clips (clip_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_s REAL NOT NULL,
    duration_s REAL NOT NULL,
    size INTEGER NOT NULL,
    payload_sha256 TEXT NOT NULL,
    UNIQUE (clip_id, idx)
);
CREATE TABLE IF NOT EXISTS clip_holds (
    hold_id TEXT NOT NULL,
    clip_id TEXT NOT NULL REFERENCES clips (clip_id) ON DELETE CASCADE,
    until_s REAL NOT NULL,
    PRIMARY KEY (hold_id, clip_id)
);
"""


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """One clip; times are UTC epoch seconds, ``end_s`` is None while it is still recording."""

    clip_id: str
    camera: str
    start_s: float
    end_s: float | None
    segment_count: int
    bytes: int
    finished: bool


@dataclass(frozen=True, slots=True)
class ClipSeal:
    """A finished clip's last signed manifest, for the audit log's ``clip.sealed`` entry."""

    clip_id: str
    camera: str
    segment_count: int
    manifest_sha256: str  # hex SHA-256 of the manifest bytes as stored and served


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One encrypted segment: an age file at ``path`` whose payload hashes to ``payload_sha256``."""

    segment_id: str
    clip_id: str
    camera: str
    index: int
    start_s: float
    duration_s: float
    size: int
    payload_sha256: str
    path: Path


def segment_name(index: int) -> str:
    return f"seg-{index:06d}.ts.age"


class ClipStore:
    """Clips and segments of every camera of one device; safe to share between camera threads."""

    def __init__(
        self,
        data_dir: Path,
        device: DeviceIdentity,
        *,
        clock: Callable[[], float] = time.time,
        token_bytes: Callable[[int], bytes] = os.urandom,
        on_deleted: Callable[[str, str], None] | None = None,
        on_sealed: Callable[[ClipSeal], None] | None = None,
    ) -> None:
        """``on_deleted(clip_id, reason)`` hears of every clip the store deletes on its own
        (``retention_age``, ``retention_budget``, ``disk_full``), and ``on_sealed(seal)`` of every
        clip that finishes (see the module doc), both for the audit log. A seal that raises a
        ``DoorwardError``, ``OSError`` or ``sqlite3.Error`` is logged and retried at the next open;
        it never stops recording."""
        self.data_dir = Path(data_dir)
        self._on_deleted = on_deleted
        self._on_sealed = on_sealed
        self._clips_dir = self.data_dir / "clips"
        self._clips_dir.mkdir(parents=True, exist_ok=True)
        self._device = device
        self._clock = clock
        self._token_bytes = token_bytes
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.data_dir / "doorward.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(clips)")}
        if "sealed" not in columns:  # a store written before clips were sealed
            self._db.execute("ALTER TABLE clips ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0")
        self.recover()

    def close(self) -> None:
        """Close the SQLite connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    # -- queries -----------------------------------------------------------------------------

    def list_clips(
        self,
        *,
        camera: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ClipRecord]:
        """Clips overlapping [start_s, end_s], oldest first, ``limit`` after the clip id ``after``."""
        if not 1 <= limit <= _MAX_LIST:
            raise StoreError(f"limit must be between 1 and {_MAX_LIST}, got {limit}")
        sql = (
            "SELECT c.clip_id, c.camera, c.start_s, c.end_s, COUNT(s.segment_id), "
            "COALESCE(SUM(s.size), 0), c.finished FROM clips c "
            "LEFT JOIN segments s ON s.clip_id = c.clip_id "
            "WHERE (?1 IS NULL OR c.camera = ?1) "
            "AND (?2 IS NULL OR c.end_s IS NULL OR c.end_s >= ?2) "
            "AND (?3 IS NULL OR c.start_s <= ?3) AND (?4 IS NULL OR c.clip_id > ?4) "
            "GROUP BY c.clip_id ORDER BY c.clip_id LIMIT ?5"
        )
        args = (camera, start_s, end_s, after, limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [ClipRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    def clip(self, clip_id: str) -> ClipRecord:
        """The clip's record with its segment count and bytes; raises StoreError if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT c.clip_id, c.camera, c.start_s, c.end_s, COUNT(s.segment_id), "
                "COALESCE(SUM(s.size), 0), c.finished FROM clips c "
                "LEFT JOIN segments s ON s.clip_id = c.clip_id WHERE c.clip_id = ? "
                "GROUP BY c.clip_id",
                (clip_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"unknown clip {clip_id!r}")
        return ClipRecord(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))

    def list_segments(self, clip_id: str) -> list[SegmentRecord]:
        """The clip's segments in index order."""
        with self._lock:
            rel_dir = self._rel_dir(clip_id)
            rows = self._db.execute(
                "SELECT s.segment_id, s.clip_id, c.camera, s.idx, s.start_s, s.duration_s, s.size, "
                "s.payload_sha256 FROM segments s JOIN clips c ON c.clip_id = s.clip_id "
                "WHERE s.clip_id = ? ORDER BY s.idx",
                (clip_id,),
            ).fetchall()
        return [self._segment_record(row, rel_dir) for row in rows]

    def segment(self, segment_id: str) -> SegmentRecord:
        """The segment's record; raises StoreError if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT s.segment_id, s.clip_id, c.camera, s.idx, s.start_s, s.duration_s, s.size, "
                "s.payload_sha256, c.rel_dir FROM segments s JOIN clips c ON c.clip_id = s.clip_id "
                "WHERE s.segment_id = ?",
                (segment_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"unknown segment {segment_id!r}")
        return self._segment_record(row[:8], row[8])

    def segments_after(self, position: int, limit: int = 500) -> list[tuple[int, SegmentRecord]]:
        """A page of every segment, in commit order from ``position`` on (0: from the first), with
        the position of each to pass to the next call. For a pass over the whole store (a
        position of a deleted newest segment may be given again to the next one)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.rowid, s.segment_id, s.clip_id, c.camera, s.idx, s.start_s, "
                "s.duration_s, s.size, s.payload_sha256, c.rel_dir FROM segments s "
                "JOIN clips c ON c.clip_id = s.clip_id WHERE s.rowid > ? ORDER BY s.rowid LIMIT ?",
                (position, limit),
            ).fetchall()
        return [(int(row[0]), self._segment_record(row[1:9], row[9])) for row in rows]

    def segment_path(self, segment_id: str) -> Path:
        """Where the segment's age file is; raises StoreError if the segment is unknown."""
        return self.segment(segment_id).path

    def manifest_bytes(self, clip_id: str) -> bytes:
        """The clip's device-signed manifest as stored (canonical JSON)."""
        with self._lock:
            path = self.data_dir / self._rel_dir(clip_id) / MANIFEST_NAME
            return path.read_bytes()

    def total_bytes(self) -> int:
        """Sum of the recorded segment file sizes, in bytes, over all clips and cameras."""
        with self._lock:
            return int(
                self._db.execute("SELECT COALESCE(SUM(size), 0) FROM segments").fetchone()[0]
            )

    # -- holds, deletion, retention ----------------------------------------------------------

    def hold(self, clip_id: str, hold_id: str, until_s: float) -> None:
        """Keep ``clip_id`` from deletion until ``until_s`` (UTC epoch) on behalf of ``hold_id``."""
        with self._lock:
            self._rel_dir(clip_id)
            self._db.execute(
                "INSERT OR REPLACE INTO clip_holds (hold_id, clip_id, until_s) VALUES (?, ?, ?)",
                (hold_id, clip_id, until_s),
            )
        logger.info("store.hold clip_id=%s hold_id=%s until_s=%.0f", clip_id, hold_id, until_s)

    def release_hold(self, hold_id: str) -> None:
        """Drop every hold placed under ``hold_id``; an unknown id is not an error."""
        with self._lock:
            self._db.execute("DELETE FROM clip_holds WHERE hold_id = ?", (hold_id,))
        logger.info("store.hold_released hold_id=%s", hold_id)

    def is_held(self, clip_id: str, now_s: float | None = None) -> bool:
        """Whether a hold on ``clip_id`` lasts past ``now_s`` (default: the store's clock)."""
        now = self._clock() if now_s is None else now_s
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM clip_holds WHERE clip_id = ? AND until_s > ? LIMIT 1", (clip_id, now)
            ).fetchone()
        return row is not None

    def delete_clip(self, clip_id: str) -> None:
        """Delete a clip's rows, then its files; refuses a held clip."""
        with self._lock:
            if self.is_held(clip_id):
                raise ClipHeld(
                    f"clip {clip_id!r} is held by a release; release the hold before deleting it"
                )
            self._delete(clip_id)

    def apply_retention(self, now_s: float, max_age_s: float, max_bytes: int) -> list[str]:
        """Delete finished, unheld clips older than ``max_age_s``, then oldest first down to ``max_bytes``."""
        deleted: list[tuple[str, str]] = []
        with self._lock:
            self._db.execute("DELETE FROM clip_holds WHERE until_s <= ?", (now_s,))
            for clip_id, end_s, _size in self._evictable(now_s):
                if end_s < now_s - max_age_s:
                    self._delete(clip_id)
                    deleted.append((clip_id, "retention_age"))
            total = self.total_bytes()
            for clip_id, _end_s, size in self._evictable(now_s):
                if total <= max_bytes:
                    break
                self._delete(clip_id)
                deleted.append((clip_id, "retention_budget"))
                total -= size
        if deleted:
            logger.info("store.retention deleted=%d", len(deleted))
        self._report(deleted)
        return [clip_id for clip_id, _reason in deleted]

    def evict_oldest(self, *, exclude: str | None = None) -> str | None:
        """Delete the oldest finished, unheld clip (not ``exclude``) to free space; its id or None."""
        evicted = None
        with self._lock:
            for clip_id, _end_s, _size in self._evictable(self._clock()):
                if clip_id != exclude:
                    self._delete(clip_id)
                    logger.warning("store.evicted clip_id=%s reason=disk_full", clip_id)
                    evicted = clip_id
                    break
        if evicted is not None:
            self._report([(evicted, "disk_full")])
        return evicted

    def _report(self, deleted: list[tuple[str, str]]) -> None:
        # Outside the store's lock: the listener (the audit log) takes its own.
        if self._on_deleted is not None:
            for clip_id, reason in deleted:
                self._on_deleted(clip_id, reason)

    # -- writing (used by the segmenter) -----------------------------------------------------

    def open_clip(self, camera: str, start_s: float) -> str:
        """Create a clip that starts at ``start_s`` (UTC epoch); returns its id."""
        if not _CAMERA_RE.fullmatch(camera):
            raise StoreError(
                f"camera name {camera!r} must be 1-64 letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        moment = datetime.fromtimestamp(start_s, tz=UTC)
        clip_id = (
            moment.strftime("%Y%m%dT%H%M%S")
            + f"{moment.microsecond // 1000:03d}Z-{self._token_bytes(4).hex()}"
        )
        rel_dir = f"clips/{camera}/{moment.strftime('%Y-%m-%d')}/{clip_id}"
        (self.data_dir / rel_dir).mkdir(parents=True)
        with self._lock:
            self._db.execute(
                "INSERT INTO clips (clip_id, camera, start_s, rel_dir) VALUES (?, ?, ?, ?)",
                (clip_id, camera, start_s, rel_dir),
            )
            self._write_manifest(clip_id)
        return clip_id

    def open_segment(self, clip_id: str, index: int) -> SegmentFile:
        """A temp file for segment ``index``; pass it to :meth:`commit_segment` or abort it."""
        with self._lock:
            directory = self.data_dir / self._rel_dir(clip_id)
        return SegmentFile(directory / segment_name(index))

    def commit_segment(
        self,
        clip_id: str,
        index: int,
        file: SegmentSink,
        *,
        start_s: float,
        duration_s: float,
        payload_sha256: bytes,
    ) -> SegmentRecord:
        """Make the segment durable, record it and re-sign the manifest."""
        file.commit()
        segment_id = segment_id_for(clip_id, index)
        with self._lock:
            self._db.execute(
                "INSERT INTO segments (segment_id, clip_id, idx, start_s, duration_s, size, "
                "payload_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (segment_id, clip_id, index, start_s, duration_s, file.size, payload_sha256.hex()),
            )
            self._write_manifest(clip_id)
            return self.segment(segment_id)

    def finish_clip(self, clip_id: str, end_s: float) -> ClipRecord:
        """Close a clip at ``end_s`` and seal it; a clip with no segment is deleted instead
        (returns its record). A clip already finished is left as it is."""
        with self._lock:
            record, manifest = self._close(clip_id, end_s)
        if manifest is not None:
            self._seal(record, manifest)
        return record

    def _close(self, clip_id: str, end_s: float) -> tuple[ClipRecord, bytes | None]:
        """Under the lock: mark the clip finished and write its final manifest (None when the
        clip was already finished, or deleted for having no segment)."""
        record = self.clip(clip_id)
        if record.finished:
            return record, None
        if record.segment_count == 0:
            self._delete(clip_id)
            return record, None
        self._db.execute(
            "UPDATE clips SET end_s = ?, finished = 1 WHERE clip_id = ?", (end_s, clip_id)
        )
        manifest = self._write_manifest(clip_id)
        return self.clip(clip_id), manifest

    # -- crash recovery ----------------------------------------------------------------------

    def recover(self) -> None:
        """Make rows and files agree after a crash (see the module docstring for the rules).

        Runs at open. It closes every unfinished clip, so call it only while nothing records.
        """
        with self._lock:
            known = dict(self._db.execute("SELECT rel_dir, clip_id FROM clips").fetchall())
            for directory in self._clip_dirs():
                rel = directory.relative_to(self.data_dir).as_posix()
                for temp in directory.glob(f"*{TEMP_SUFFIX}"):
                    temp.unlink()
                if rel not in known:
                    logger.warning("store.recover_removed_dir dir=%s", rel)
                    shutil.rmtree(directory)
                    continue
                self._reconcile_segments(known[rel], directory)
            for clip_id, rel in self._db.execute("SELECT clip_id, rel_dir FROM clips").fetchall():
                if not (self.data_dir / rel).is_dir():
                    self._db.execute("DELETE FROM clips WHERE clip_id = ?", (clip_id,))
            unfinished = self._db.execute(
                "SELECT c.clip_id, MAX(s.start_s + s.duration_s) FROM clips c "
                "LEFT JOIN segments s ON s.clip_id = c.clip_id WHERE c.finished = 0 "
                "GROUP BY c.clip_id"
            ).fetchall()
            for clip_id, end_s in unfinished:
                logger.warning("store.recover_closed clip_id=%s", clip_id)
                if end_s is None:
                    self._delete(clip_id)
                else:
                    self._close(clip_id, end_s)  # sealed with the others below
            unsealed = [
                (self.clip(clip_id), self.manifest_bytes(clip_id))
                for (clip_id,) in self._db.execute(
                    "SELECT clip_id FROM clips WHERE finished = 1 AND sealed = 0 ORDER BY clip_id"
                ).fetchall()
            ]
        # Outside the lock, once each: the clips closed above and those whose seal failed before.
        for record, manifest in unsealed:
            logger.warning("store.recover_sealed clip_id=%s", record.clip_id)
            self._seal(record, manifest)

    def _reconcile_segments(self, clip_id: str, directory: Path) -> None:
        rows = {
            idx: size
            for idx, size in self._db.execute(
                "SELECT idx, size FROM segments WHERE clip_id = ?", (clip_id,)
            ).fetchall()
        }
        on_disk: dict[int, int] = {}
        for path in directory.iterdir():
            match = _SEGMENT_RE.fullmatch(path.name)
            if match:
                on_disk[int(match.group(1))] = path.stat().st_size
        changed = False
        for idx, size in on_disk.items():
            if rows.get(idx) != size:
                (directory / segment_name(idx)).unlink()
                logger.warning("store.recover_removed_file clip_id=%s index=%d", clip_id, idx)
        for idx, size in rows.items():
            if on_disk.get(idx) != size:
                self._db.execute(
                    "DELETE FROM segments WHERE clip_id = ? AND idx = ?", (clip_id, idx)
                )
                changed = True
        if not (directory / MANIFEST_NAME).exists():
            self._write_manifest(clip_id)
        elif changed and self._is_sealed(clip_id):
            # Its manifest is in the audit log: keep it (it lists the lost segment, which the
            # store no longer lists or serves).
            logger.warning("store.recover_kept_sealed_manifest clip_id=%s", clip_id)
        elif changed:
            self._write_manifest(clip_id)

    # -- internals ---------------------------------------------------------------------------

    def _clip_dirs(self) -> Iterator[Path]:
        for camera in sorted(p for p in self._clips_dir.iterdir() if p.is_dir()):
            for day in sorted(p for p in camera.iterdir() if p.is_dir()):
                yield from sorted(p for p in day.iterdir() if p.is_dir())

    def _rel_dir(self, clip_id: str) -> str:
        row = self._db.execute("SELECT rel_dir FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        if row is None:
            raise StoreError(f"unknown clip {clip_id!r}")
        return str(row[0])

    def _segment_record(self, row: tuple[object, ...], rel_dir: str) -> SegmentRecord:
        seg_id, clip_id, camera, idx, start_s, duration_s, size, sha = row
        assert isinstance(idx, int)
        return SegmentRecord(
            segment_id=str(seg_id),
            clip_id=str(clip_id),
            camera=str(camera),
            index=idx,
            start_s=float(start_s),  # type: ignore[arg-type]
            duration_s=float(duration_s),  # type: ignore[arg-type]
            size=int(size),  # type: ignore[call-overload]
            payload_sha256=str(sha),
            path=self.data_dir / rel_dir / segment_name(idx),
        )

    def _evictable(self, now_s: float) -> list[tuple[str, float, int]]:
        """Finished clips without a live hold, oldest first: (clip id, end, bytes)."""
        return self._db.execute(
            "SELECT c.clip_id, c.end_s, COALESCE(SUM(s.size), 0) FROM clips c "
            "LEFT JOIN segments s ON s.clip_id = c.clip_id "
            "WHERE c.finished = 1 AND NOT EXISTS (SELECT 1 FROM clip_holds h "
            "WHERE h.clip_id = c.clip_id AND h.until_s > ?) "
            "GROUP BY c.clip_id ORDER BY c.start_s, c.clip_id",
            (now_s,),
        ).fetchall()

    def _delete(self, clip_id: str) -> None:
        # Rows first: a crash in between leaves an unknown directory, which recovery removes.
        rel_dir = self._rel_dir(clip_id)
        self._db.execute("DELETE FROM clips WHERE clip_id = ?", (clip_id,))
        shutil.rmtree(self.data_dir / rel_dir, ignore_errors=True)
        logger.info("store.deleted clip_id=%s", clip_id)

    def _seal(self, record: ClipRecord, manifest: bytes) -> None:
        """Hand a finished clip's manifest to ``on_sealed``, outside the store's lock (the
        listener, the audit log, takes its own), then mark the clip sealed."""
        if self._on_sealed is None:
            return
        seal = ClipSeal(
            record.clip_id,
            record.camera,
            record.segment_count,
            hashlib.sha256(manifest).hexdigest(),
        )
        try:
            self._on_sealed(seal)
        except (DoorwardError, OSError, sqlite3.Error) as exc:
            logger.error(
                "store.seal_failed clip_id=%s error=%s (retried at the next start)",
                record.clip_id,
                type(exc).__name__,
            )
            return
        with self._lock:
            self._db.execute("UPDATE clips SET sealed = 1 WHERE clip_id = ?", (record.clip_id,))
        logger.info("store.sealed clip_id=%s segments=%d", record.clip_id, record.segment_count)

    def _is_sealed(self, clip_id: str) -> bool:
        row = self._db.execute("SELECT sealed FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        return bool(row and row[0])

    def _write_manifest(self, clip_id: str) -> bytes:
        clip = self._db.execute(
            "SELECT camera, start_s, end_s, rel_dir FROM clips WHERE clip_id = ?", (clip_id,)
        ).fetchone()
        segments = self._db.execute(
            "SELECT idx, start_s, duration_s, size, payload_sha256 FROM segments "
            "WHERE clip_id = ? ORDER BY idx",
            (clip_id,),
        ).fetchall()
        manifest = ClipManifest.from_seconds(
            device_id=self._device.device_id,
            clip_id=clip_id,
            camera=clip[0],
            start_s=clip[1],
            end_s=clip[2],
            segments=segments,
        )
        signed = manifest.sign(self._device.private_key)
        write_atomic(self.data_dir / clip[3] / MANIFEST_NAME, signed)
        return signed
