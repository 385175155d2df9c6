"""Release delivery through the off-site store: approved bundles go up once, requesters fetch them
from the store with short-lived presigned URLs.

When an owner approves a release and the device has a backup store, :class:`OffsiteReleases`
builds the release bundle (the same tar the direct download streams) and uploads it as
``rel/<release-id>`` (``hub.offsite.layout``). A requester's signed ``GET /releases/{id}/link``
then counts one download, exactly as the direct download does, and answers with a presigned GET
URL for that one object, valid for at most :data:`LINK_TTL_S` and never past the consent token's
expiry; so a large release leaves the home's uplink once, not once per download. Each URL issued
is an audit entry (``release.presigned``: release, requester, link id, expiry, never the URL).
The direct download stays: when the store is down or the URL fails, the requester fetches
``GET /releases/{id}?link=LINK`` from the device instead, once per link, without a second count.

Uploading never holds up recording or the owner's approval: it runs in its own task after the
approval is answered, the bundle is spooled on the API's serial worker (the desk and the audit
log are single-owner, as for a direct download) and read and sent off the event loop. A store
that fails is retried with a growing pause (30 s to 15 min); each failure is logged, sent to the
owners as a ``release.offsite`` event and kept in :meth:`OffsiteReleases.status`. Which releases
are uploaded and which links were issued is kept in ``release-uploads.db`` in the data folder, so a
restart neither uploads a bundle twice nor forgets one that was approved but not yet sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from consent.audit import AuditLog
from consent.desk import ConsentDesk
from consent.errors import ConsentError, TokenExpired
from hub.offsite.layout import release_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.target import OffsiteError
from hub.server.spool import spool_bundle

__all__ = [
    "LINK_TTL_S",
    "OffsiteReleases",
    "ReleaseLink",
    "offsite_releases",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LINK_TTL_S = 600  # a presigned URL lasts at most this long (and never past the token's expiry)
RETRY_FIRST_S = 30.0  # pause after a failed upload, doubled per failure up to RETRY_MAX_S
RETRY_MAX_S = 900.0
SWEEP_EVERY_S = 600.0  # how often bundles of ended releases are looked for, to delete them
# Releases waiting for the store: approvals are owner-signed, but a store down for weeks must not
# grow this without end; past the cap the oldest waits for the next restart's scan.
MAX_PENDING = 1000
DB_NAME = "release-uploads.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsite_releases (
    release_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offsite_links (
    link_id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL,
    requester_key_id TEXT NOT NULL,
    expires_at_s INTEGER NOT NULL,
    issued_s INTEGER NOT NULL,
    redeemed_s INTEGER
);
"""

Runner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ReleaseLink:
    """A presigned URL for one release bundle, and until when it works."""

    release_id: str
    link_id: str
    expires_at_s: int
    url: str = field(repr=False)  # carries the store's signature: never logged


class OffsiteReleases:
    """Uploads approved release bundles to the off-site store and issues presigned URLs for them."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        desk: ConsentDesk,
        audit: AuditLog,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        link_ttl_s: int = LINK_TTL_S,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        """``store`` is opened (and closed) by the caller; ``desk`` and ``audit`` are used only
        through the runner given to :meth:`start` (the API's serial worker)."""
        if link_ttl_s < 1:
            raise ValueError(f"link_ttl_s must be at least 1 s, got {link_ttl_s}")
        self._store = store
        self._desk = desk
        self._audit = audit
        self._spool = Path(data_dir) / "spool"
        self._table = _UploadTable(Path(data_dir) / DB_NAME)
        self._clock = clock
        self._link_ttl_s = link_ttl_s
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._pending: dict[str, None] = {}  # an ordered set: oldest approval first
        self._wake = asyncio.Event()
        self._run: Runner | None = None
        self._notify: Callable[..., None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._last_success_s: float | None = None
        # Set while the uploader waits: nothing queued, or a pause after a failure.
        self.idle = asyncio.Event()

    def __repr__(self) -> str:
        return f"OffsiteReleases({self._store.address})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, run: Runner, notify: Callable[..., None] | None = None) -> None:
        """Start the uploader: ``run(fn, *args)`` runs desk and audit calls (the API's serial
        worker), ``notify(kind, **data)`` tells the owners (the event bus). Releases still open
        but not uploaded (approved just before a restart, or while the store was down) are
        queued."""
        self._run, self._notify = run, notify
        open_ids = await run(self._desk.open_releases, int(self._clock()))
        uploaded = await asyncio.to_thread(self._table.uploaded_ids)
        for release_id in open_ids:
            if release_id not in uploaded:
                self._queue(release_id)
        self._task = asyncio.create_task(self._uploader(), name="release-offsite")

    async def close(self) -> None:
        """Stop the uploader (an upload in flight is abandoned and retried at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._table.close)

    # -- uploading ---------------------------------------------------------------------------

    def schedule(self, release_id: str) -> None:
        """Queue an approved release for upload and return at once (call on the event loop)."""
        self._queue(release_id)

    async def publish(self, release_id: str) -> bool:
        """Build ``release_id``'s bundle and upload it; True when it is in the store (now or
        before), False when the release can no longer be downloaded (nothing is uploaded then).
        Raises :class:`OffsiteError` when the store fails, ``OSError`` when the spool does."""
        run = self._runner()
        if release_id in await asyncio.to_thread(self._table.uploaded_ids):
            return True
        release = await run(self._desk.release, release_id)
        now = self._clock()
        if (
            release.revoked
            or release.expires_at_s <= now
            or release.downloads >= release.max_downloads
        ):
            logger.info("release_offsite.skipped release_id=%s (no download left)", release_id)
            return False
        path = await run(spool_bundle, self._desk, release_id, self._spool)
        try:
            size, digest = await asyncio.to_thread(_size_and_sha256, path)
            await self._store.put_file(release_name(release_id), path, sha256=digest)
        finally:
            await asyncio.to_thread(path.unlink, True)
        await asyncio.to_thread(
            self._table.uploaded, release_id, size, digest.hex(), int(self._clock())
        )
        await run(
            lambda: self._audit.append(
                "release.uploaded", release_id=release_id, bytes=size, sha256=digest.hex()
            )
        )
        self._last_success_s = self._clock()
        logger.info("release_offsite.uploaded release_id=%s bytes=%d", release_id, size)
        self._tell("release.offsite", release_id=release_id, state="uploaded", bytes=size)
        return True

    async def sweep(self, now: int | None = None) -> list[str]:
        """Delete from the store the bundles of releases that can no longer be downloaded
        (revoked, expired or every download used) once the last URL issued for them expired
        (at ``now``, default the clock); each deletion is a ``backup.deleted`` audit entry.
        Returns the deleted release ids."""
        run = self._runner()
        now = int(self._clock()) if now is None else now
        deleted = []
        for release_id in sorted(await asyncio.to_thread(self._table.uploaded_ids)):
            try:
                release = await run(self._desk.release, release_id)
                ended = (
                    release.revoked
                    or release.expires_at_s <= now
                    or release.downloads >= release.max_downloads
                )
            except ConsentError:
                ended = True  # gone from the desk: nobody can ask for it any more
            if not ended or await asyncio.to_thread(self._table.last_link_expiry, release_id) > now:
                continue
            await self._store.delete(release_name(release_id))
            await asyncio.to_thread(self._table.deleted, release_id, now)
            await run(
                lambda rid=release_id: self._audit.append(
                    "backup.deleted",
                    release_id=rid,
                    object=release_name(rid),
                    object_count=1,
                    reason="release_ended",
                )
            )
            logger.info("release_offsite.deleted release_id=%s reason=release_ended", release_id)
            deleted.append(release_id)
        return deleted

    async def uploaded(self, release_id: str) -> bool:
        """Whether ``release_id``'s bundle is in the store."""
        return release_id in await asyncio.to_thread(self._table.uploaded_ids)

    def status(self) -> dict[str, Any]:
        """Releases waiting for the store, the last error and the last upload's time (epoch s)."""
        return {
            "pending": len(self._pending),
            "last_error": self._last_error,
            "last_success": self._last_success_s,
        }

    # -- links -------------------------------------------------------------------------------

    async def presign(self, release_id: str, now: int, *, requester_key_id: str) -> ReleaseLink:
        """A presigned URL for ``release_id``'s uploaded bundle, expiring at the earlier of
        ``now`` + the link lifetime and the consent token's expiry; audited as
        ``release.presigned``. The caller has counted the download (``authorize_download``)."""
        run = self._runner()
        release = await run(self._desk.release, release_id)
        expires_at_s = min(release.expires_at_s, now + self._link_ttl_s)
        if expires_at_s - now < 1:
            raise TokenExpired(f"release {release_id} expired at {release.expires_at_s}")
        url = await self._store.presign_get(release_name(release_id), expires_at_s - now)
        link_id = secrets.token_urlsafe(12)
        await asyncio.to_thread(
            self._table.add_link, link_id, release_id, requester_key_id, expires_at_s, now
        )
        await run(
            lambda: self._audit.append(
                "release.presigned",
                release_id=release_id,
                requester=requester_key_id,
                link=link_id,
                expires=expires_at_s,
                download=release.downloads,
            )
        )
        logger.info(
            "release_offsite.presigned release_id=%s link=%s expires=%d",
            release_id,
            link_id,
            expires_at_s,
        )
        return ReleaseLink(release_id, link_id, expires_at_s, url)

    async def redeem(self, link_id: str, release_id: str, requester_key_id: str, now: int) -> bool:
        """Use the download counted for ``link_id`` once for a direct fetch (its URL failed);
        False if the link was not issued for this release and key, or was used already."""
        return await asyncio.to_thread(
            self._table.redeem, link_id, release_id, requester_key_id, now
        )

    # -- internals ---------------------------------------------------------------------------

    def _queue(self, release_id: str) -> None:
        if release_id not in self._pending and len(self._pending) >= MAX_PENDING:
            dropped = next(iter(self._pending))
            del self._pending[dropped]
            logger.warning(
                "release_offsite.queue_full dropped=%s (retried at the next start)", dropped
            )
        self._pending[release_id] = None
        self.idle.clear()
        self._wake.set()

    def _runner(self) -> Runner:
        if self._run is None:
            raise RuntimeError("OffsiteReleases.start() was not called")
        return self._run

    def _tell(self, kind: str, **data: Any) -> None:
        if self._notify is not None:
            self._notify(kind, **data)

    async def _uploader(self) -> None:
        pause_s = self._retry_first_s
        sweep_due = self._clock() + SWEEP_EVERY_S
        while True:
            self._wake.clear()
            failed = False
            if self._clock() >= sweep_due:
                sweep_due = self._clock() + SWEEP_EVERY_S
                try:
                    await self.sweep()
                except (OffsiteError, OSError) as exc:
                    logger.warning("release_offsite.sweep_failed error=%s", type(exc).__name__)
            for release_id in list(self._pending):
                try:
                    await self.publish(release_id)
                except (OffsiteError, OSError) as exc:
                    failed = True
                    await self._failed(release_id, exc)
                    break  # the store is likely down for the others too: wait, then retry all
                except ConsentError as exc:  # the release is gone from the desk
                    logger.warning(
                        "release_offsite.dropped release_id=%s error=%s", release_id, exc
                    )
                except Exception:  # our own bug: log it, keep the uploader alive
                    logger.exception("release_offsite.bug release_id=%s", release_id)
                self._pending.pop(release_id, None)
            if failed:
                timeout_s: float = pause_s
                pause_s = min(pause_s * 2, self._retry_max_s)
            else:
                timeout_s, pause_s = SWEEP_EVERY_S, self._retry_first_s
                if not self._pending:
                    self.idle.set()
            # Not asyncio.wait_for: on Python 3.11 a cancel that comes with the wake-up is lost
            # there, and close() would wait for this task for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()

    async def _failed(self, release_id: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self._last_error = error
        await asyncio.to_thread(self._table.failed, release_id, error, int(self._clock()))
        logger.warning("release_offsite.upload_failed release_id=%s error=%s", release_id, error)
        self._tell(
            "release.offsite", release_id=release_id, state="failed", error=type(exc).__name__
        )
        self.idle.set()  # nothing more happens until the retry


class _OpenDevice(Protocol):
    """What the uploader takes from ``hub.server.state.Device`` (which imports the deps)."""

    desk: ConsentDesk
    audit: AuditLog
    data_dir: Path


def offsite_releases(device: _OpenDevice, store: ObjectStore) -> OffsiteReleases:
    """The release uploader of an opened device on ``store`` (opened and closed by the caller);
    the runtime puts it in ``HubDeps.offsite_releases`` and the app starts and stops it."""
    return OffsiteReleases(store, desk=device.desk, audit=device.audit, data_dir=device.data_dir)


def _size_and_sha256(path: Path) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.digest()


class _UploadTable:
    """Which bundles are in the store, and which links were issued; any thread, one at a time."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def uploaded_ids(self) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT release_id FROM offsite_releases WHERE state = 'uploaded'"
            ).fetchall()
        return {r[0] for r in rows}

    def uploaded(self, release_id: str, size: int, sha256: str, now: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO offsite_releases (release_id, state, size, sha256, attempts, "
                "updated_s) VALUES (?, 'uploaded', ?, ?, 1, ?) ON CONFLICT (release_id) DO UPDATE "
                "SET state = 'uploaded', size = excluded.size, sha256 = excluded.sha256, "
                "attempts = attempts + 1, last_error = NULL, updated_s = excluded.updated_s",
                (release_id, size, sha256, now),
            )

    def failed(self, release_id: str, error: str, now: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO offsite_releases (release_id, state, attempts, last_error, "
                "updated_s) VALUES (?, 'failed', 1, ?, ?) ON CONFLICT (release_id) DO UPDATE "
                "SET attempts = attempts + 1, last_error = excluded.last_error, "
                "updated_s = excluded.updated_s WHERE state != 'uploaded'",
                (release_id, error[:500], now),
            )

    def add_link(
        self, link_id: str, release_id: str, requester_key_id: str, expires_at_s: int, now: int
    ) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO offsite_links (link_id, release_id, requester_key_id, "
                "expires_at_s, issued_s) VALUES (?, ?, ?, ?, ?)",
                (link_id, release_id, requester_key_id, expires_at_s, now),
            )

    def redeem(self, link_id: str, release_id: str, requester_key_id: str, now: int) -> bool:
        with self._lock, self._db:
            done = self._db.execute(
                "UPDATE offsite_links SET redeemed_s = ? WHERE link_id = ? AND release_id = ? "
                "AND requester_key_id = ? AND redeemed_s IS NULL",
                (now, link_id, release_id, requester_key_id),
            )
            return done.rowcount == 1

    def last_link_expiry(self, release_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(expires_at_s) FROM offsite_links WHERE release_id = ?", (release_id,)
            ).fetchone()
        return int(row[0] or 0)

    def deleted(self, release_id: str, now: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE offsite_releases SET state = 'deleted', updated_s = ? WHERE release_id = ?",
                (now, release_id),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
