"""Off-site backup, device side: every closed segment, clip manifest and audit checkpoint goes to
an S3-compatible bucket, in order, from a queue that survives crashes (``hub.server.backup_queue``).

Recording never waits for it. The pipelines only *notice* a segment or a finished clip
(:meth:`OffsiteBackup.notice`, on the event loop: a set insert); the uploader task reads the store,
fills the queue and uploads on its own, in worker threads for file and SQLite work. A store that
is down, slow, full or refusing the credentials is retried with backoff (1 s doubling to 60 s),
shown to owners as a ``backup.failed`` event (``backup.recovered`` once it works again) and in
``GET /backup``, and logged once per change of error.

Order: a segment is uploaded before the manifest that lists it (the manifest is queued behind it),
and the audit log's entries before the checkpoint that covers them, so whatever a crash or theft
leaves in the bucket is consistent as far as it goes.

Bounds: the queue's un-uploaded segments may take ``max_queue_mb``; past that the oldest segments
of clips no release holds are skipped (never uploaded), each clip's skip a ``backup.skipped``
audit entry. Retention follows the device's ``retention_days``: a clip that ended longer ago is
deleted from the bucket (``backup.deleted``) unless a release holds it. Clips the device deletes
early for space (``retention_budget``, ``disk_full``) stay in the bucket: that is what it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consent.audit import MAX_ENTRIES_PER_READ, AuditLog
from consent.audit_verify import AuditVerifier
from consent.clips import segment_id_for
from crypto import age
from crypto.errors import DoorwardError
from device import ClipStore
from device.errors import StoreError
from device.events import ClipFinished, SegmentWritten
from hub.offsite import layout
from hub.offsite.s3 import ObjectStore
from hub.offsite.target import Credentials, StoreFull
from hub.server.backup_queue import BackupQueue, QueueItem
from hub.server.config import BackupConfig
from hub.server.owners import OwnersTable

__all__ = ["BackupStatus", "OffsiteBackup"]

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
AUDIT_EVERY_S = 10.0
RETENTION_EVERY_S = 60.0
_IDLE_WAIT_S = 5.0
_LOG_SIZE = "audit_uploaded"
_LOG_OWNERS = "audit_owners"  # a mark of the owners the uploaded log batches are encrypted to


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """Where the backup stands, as ``GET /backup`` shows it (no credential, no key)."""

    target: str
    queued_objects: int
    queued_bytes: int
    lag_s: float
    uploaded_objects: int
    uploaded_bytes: int
    skipped_objects: int
    audit_entries_uploaded: int
    last_success_s: float | None
    last_error: str | None
    last_error_s: float | None

    def to_json(self) -> dict[str, Any]:
        """The API's JSON form."""
        return {
            "enabled": True,
            "target": self.target,
            "queued_objects": self.queued_objects,
            "queued_bytes": self.queued_bytes,
            "lag_s": round(self.lag_s, 3),
            "uploaded_objects": self.uploaded_objects,
            "uploaded_bytes": self.uploaded_bytes,
            "skipped_objects": self.skipped_objects,
            "audit_entries_uploaded": self.audit_entries_uploaded,
            "last_success": self.last_success_s,
            "last_error": self.last_error,
            "last_error_at": self.last_error_s,
        }


class OffsiteBackup:
    """The uploader of one device: :meth:`run` as a task, :meth:`notice` from the pipelines."""

    def __init__(
        self,
        config: BackupConfig,
        *,
        data_dir: Path,
        store: ClipStore,
        audit: AuditLog,
        owners: OwnersTable,
        device_key: Any,
        retention_days: float,
        publish: Callable[..., None] | None = None,
        clock: Callable[[], float] = time.time,
        audit_every_s: float = AUDIT_EVERY_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``publish(kind, **fields)`` sends owners the ``backup.*`` events; ``device_key`` is the
        device's Ed25519 private key (it keys the opaque clip names); new audit entries go up
        at most once per ``audit_every_s``, when nothing else is queued."""
        self.config = config
        self.address = config.address(store_device_id(device_key))
        self._data_dir = Path(data_dir)
        self._store = store
        self._audit = audit
        self._owners = owners
        self._token_key = layout.clip_token_key(device_key)
        self._checkpoints = AuditVerifier(device_key.public_key(), audit.origin)
        self._retention_s = retention_days * 86400
        self._publish = publish
        self._clock = clock
        self.queue = BackupQueue(self._data_dir / "backup.db")
        self._noticed_segments: set[tuple[str, int]] = set()
        self._noticed_clips: set[str] = set()
        self._position = 0  # the store's segment position read up to (see _reconcile)
        self._wake = asyncio.Event()
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._last_error_s: float | None = None
        self._failing = False
        self._audit_every_s = audit_every_s
        self._sleep = sleep  # the upload rate's pauses
        self._audit_due = 0.0
        self._retention_due = 0.0

    def __repr__(self) -> str:
        return f"OffsiteBackup({self.address})"

    # -- from the pipelines (event loop) -----------------------------------------------------

    def notice(self, event: object) -> None:
        """A pipeline event: a written segment or a finished clip is queued by the uploader."""
        if isinstance(event, SegmentWritten):
            self._noticed_segments.add((event.clip_id, event.index))
            self._noticed_clips.add(event.clip_id)
        elif isinstance(event, ClipFinished):
            self._noticed_clips.add(event.clip_id)
        else:
            return
        self._wake.set()

    # -- status ------------------------------------------------------------------------------

    def status(self) -> BackupStatus:
        """The queue's totals and the last success and error (reads SQLite: call off the loop)."""
        totals = self.queue.totals()
        now = self._clock()
        lag = 0.0 if totals.oldest_queued_s is None else max(0.0, now - totals.oldest_queued_s)
        return BackupStatus(
            target=str(self.address),
            # Segments noticed but not read from the store yet are queued too, as a user sees it.
            queued_objects=totals.queued_objects + len(self._noticed_segments),
            queued_bytes=totals.queued_bytes,
            lag_s=lag,
            uploaded_objects=totals.done_objects,
            uploaded_bytes=totals.done_bytes,
            skipped_objects=totals.skipped_objects,
            audit_entries_uploaded=self.queue.get(_LOG_SIZE),
            last_success_s=self._last_success,
            last_error=self._last_error,
            last_error_s=self._last_error_s,
        )

    def close(self) -> None:
        """Close the queue (after the task has stopped)."""
        self.queue.close()

    # -- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile the queue with the store, then upload until cancelled."""
        logger.info("backup.started target=%s", self.address)
        await asyncio.to_thread(self._reconcile)
        backoff = 1.0
        while True:
            try:
                async with self._open() as bucket:
                    while True:
                        if await self._step(bucket):
                            backoff = 1.0
                            continue
                        await self._idle()
            except DoorwardError as exc:
                self._failed(exc)
                await self._back_off(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[ObjectStore]:
        # The credentials are read at each (re)connection, so a fixed file is picked up.
        credentials = await asyncio.to_thread(Credentials.load, self.config.credentials_file)
        async with ObjectStore(self.address, credentials) as bucket:
            yield bucket

    async def _back_off(self, seconds: float) -> None:
        """Wait before retrying the store, queueing what the pipelines notice meanwhile (so the
        queue's bound holds while the store is away)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.to_thread(self._fill)
            self._wake.clear()
            await self._woken(left)

    async def _idle(self) -> None:
        self._wake.clear()
        await self._woken(min(_IDLE_WAIT_S, max(0.05, self._audit_due - self._clock())))

    async def _woken(self, timeout_s: float) -> None:
        """Until a notice or ``timeout_s``. Not ``asyncio.wait_for``: on Python 3.11 it returns
        instead of raising when a cancel comes with the wake-up (as at shutdown, when the
        pipelines close their clips), and the task would never stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    async def _step(self, bucket: ObjectStore) -> bool:
        """One unit of work; False when there was nothing to do."""
        await asyncio.to_thread(self._fill)
        item = await asyncio.to_thread(self.queue.next)
        if item is not None:
            await self._upload(bucket, item)
            return True
        now = self._clock()
        if now >= self._audit_due:
            self._audit_due = now + self._audit_every_s
            if await self._upload_audit(bucket):
                return True
        if now >= self._retention_due:
            self._retention_due = now + RETENTION_EVERY_S
            await self._apply_retention(bucket)
        return False

    # -- filling the queue (worker thread) ---------------------------------------------------

    def _reconcile(self) -> None:
        """At start: queue every segment the queue has never seen (one a crash kept from it)
        and every clip's manifest that changed since it was queued."""
        now = self._clock()
        self._position = 0
        self._scan(now)
        after = None
        while clips := self._store.list_clips(limit=1000, after=after):
            after = clips[-1].clip_id
            for clip in clips:
                self._add_manifest(clip.clip_id, now)
        self._bound()

    def _scan(self, now: float) -> set[str]:
        """Queue the segments committed since the last scan (any a notice missed); returns
        their clips."""
        touched: set[str] = set()
        while page := self._store.segments_after(self._position):
            self._position = page[-1][0]
            names = {layout.segment_name(seg.payload_sha256): seg for _, seg in page}
            known = self.queue.known(names)
            for name, seg in names.items():
                if name not in known:
                    self._add_segment(name, seg, now)
                    touched.add(seg.clip_id)
        return touched

    def _fill(self) -> None:
        segments, self._noticed_segments = self._noticed_segments, set()
        clips, self._noticed_clips = self._noticed_clips, set()
        now = self._clock()
        clips |= self._scan(now)
        for clip_id, index in sorted(segments):
            try:
                seg = self._store.segment(segment_id_for(clip_id, index))
            except StoreError:
                continue  # deleted since
            self._add_segment(layout.segment_name(seg.payload_sha256), seg, now)
        for clip_id in sorted(clips):
            self._add_manifest(clip_id, now)
        if clips:
            self._bound()

    def _add_segment(self, name: str, seg: Any, now: float) -> None:
        rel = seg.path.relative_to(self._data_dir).as_posix()
        self.queue.add_segment(name, seg.clip_id, rel, seg.size, now)

    def _add_manifest(self, clip_id: str, now: float) -> None:
        try:
            record = self._store.clip(clip_id)
            manifest = self._store.manifest_bytes(clip_id)
        except (StoreError, OSError):
            return
        self.queue.add_manifest(
            layout.manifest_name(self._token_key, clip_id),
            clip_id,
            hashlib.sha256(manifest).hexdigest(),
            record.end_s,
            now,
        )

    def _bound(self) -> None:
        """Skip the oldest un-uploaded segments of unheld clips past ``max_queue_mb``."""
        limit = self.config.max_queue_mb * 1024 * 1024
        queued = self.queue.queued_segments()
        total = sum(item.size for item in queued)
        skipped: dict[str, int] = {}
        now = self._clock()
        for item in queued:
            if total <= limit:
                break
            assert item.clip_id is not None
            if self._store.is_held(item.clip_id, now):
                continue
            self.queue.mark(item, "skipped", now)
            total -= item.size
            skipped[item.clip_id] = skipped.get(item.clip_id, 0) + 1
        for clip_id, count in skipped.items():
            logger.warning(
                "backup.skipped clip_id=%s segments=%d reason=queue_full max_queue_mb=%d",
                clip_id,
                count,
                self.config.max_queue_mb,
            )
            self._audit.append(
                "backup.skipped", clip_id=clip_id, segment_count=count, reason="queue_full"
            )

    # -- uploading ---------------------------------------------------------------------------

    async def _upload(self, bucket: ObjectStore, item: QueueItem) -> None:
        started = time.monotonic()
        if item.kind == "segment":
            sent = await self._upload_segment(bucket, item)
        else:
            sent = await self._upload_manifest(bucket, item)
        if sent is None:
            return
        await asyncio.to_thread(self.queue.mark, item, "done", self._clock(), size=sent)
        self._succeeded()
        logger.debug("backup.uploaded kind=%s size=%d", item.kind, sent)
        await self._pace(sent, time.monotonic() - started)

    async def _upload_segment(self, bucket: ObjectStore, item: QueueItem) -> int | None:
        assert item.path is not None
        assert item.clip_id is not None
        path = self._data_dir / item.path
        data, payload, digest = await asyncio.to_thread(_read_segment, path)
        if data is None or layout.SEGMENTS + payload != item.name:
            reason = "deleted_before_upload" if data is None else "changed_on_disk"
            await asyncio.to_thread(self._skip, item, reason)
            return None
        await bucket.put_bytes(item.name, data, sha256=digest)
        return len(data)

    async def _upload_manifest(self, bucket: ObjectStore, item: QueueItem) -> int | None:
        assert item.clip_id is not None
        try:
            manifest = await asyncio.to_thread(self._store.manifest_bytes, item.clip_id)
        except (StoreError, OSError):
            await asyncio.to_thread(self.queue.mark, item, "skipped", self._clock())
            return None
        await bucket.put_bytes(item.name, manifest)
        return len(manifest)

    def _skip(self, item: QueueItem, reason: str) -> None:
        self.queue.mark(item, "skipped", self._clock())
        logger.warning("backup.skipped clip_id=%s segments=1 reason=%s", item.clip_id, reason)
        self._audit.append("backup.skipped", clip_id=item.clip_id, segment_count=1, reason=reason)

    async def _pace(self, sent: int, took_s: float) -> None:
        """Keep the average rate under ``max_upload_kbps`` (0: no limit)."""
        if self.config.max_upload_kbps > 0:
            due = sent * 8 / (self.config.max_upload_kbps * 1000)
            if due > took_s:
                await self._sleep(due - took_s)

    async def _upload_audit(self, bucket: ObjectStore) -> bool:
        """Upload the audit entries not yet in the bucket, then the checkpoint covering them;
        False when there was nothing new (or no owner to encrypt the entries to)."""
        await self._follow_owners(bucket)
        batch = await asyncio.to_thread(self._audit_batch)
        if batch is None:
            return False
        start, end, blob, checkpoint = batch
        await bucket.put_bytes(layout.log_name(start), blob)
        await asyncio.to_thread(
            self.queue.record_done, layout.log_name(start), "log", self._clock()
        )
        if checkpoint is not None:
            await bucket.put_bytes(layout.checkpoint_name(end), checkpoint.encode("utf-8"))
            await asyncio.to_thread(
                self.queue.record_done, layout.checkpoint_name(end), "checkpoint", self._clock()
            )
        await asyncio.to_thread(self.queue.put, _LOG_SIZE, end)
        self._succeeded()
        logger.info("backup.audit_uploaded entries=%d size=%d", end - start, end)
        if checkpoint is None:
            self._audit_due = 0.0  # more to go
        return True

    async def _follow_owners(self, bucket: ObjectStore) -> None:
        """When the owners changed since the log batches were uploaded, delete the batches and
        start again from entry 0, encrypted to the owners of now: a phone paired later can then
        verify the whole log from the bucket, and a removed one reads no new copy of it."""
        mark, stored = await asyncio.to_thread(self._owners_marks)
        if mark == stored or mark == 0:
            return
        if stored != 0:
            names = await asyncio.to_thread(self.queue.done_names, "log")
            for name in names:
                await bucket.delete(name)
                await asyncio.to_thread(self.queue.mark_name, name, "deleted", self._clock())
            logger.info("backup.audit_reencrypting batches=%d reason=owners_changed", len(names))
            await asyncio.to_thread(self.queue.put, _LOG_SIZE, 0)
        await asyncio.to_thread(self.queue.put, _LOG_OWNERS, mark)
        self._audit_due = 0.0

    def _owners_marks(self) -> tuple[int, int]:
        """A mark of the current owners' recipients (0: none) and the one stored."""
        recipients = sorted(owner.recipient for owner in self._owners.list_owners())
        digest = hashlib.sha256("\n".join(recipients).encode()).digest()
        mark = int.from_bytes(digest[:7], "big") if recipients else 0
        return mark, self.queue.get(_LOG_OWNERS)

    def _audit_batch(self) -> tuple[int, int, bytes, str | None] | None:
        uploaded = self.queue.get(_LOG_SIZE)
        if self._audit.size <= uploaded:
            return None
        recipients = self._owners.recipients()
        if not recipients:
            return None  # nobody to encrypt the entries to yet; they wait for the first owner
        checkpoint = self._audit.checkpoint()
        size = self._checkpoints.open_checkpoint(checkpoint).size
        end = min(size, uploaded + MAX_ENTRIES_PER_READ)
        lines = io.BytesIO()
        for entry in self._audit.entries(uploaded, end):
            lines.write(entry.leaf + b"\n")
        blob = age.encrypt_bytes(recipients, lines.getvalue())
        return uploaded, end, blob, checkpoint if end == size else None

    # -- retention ---------------------------------------------------------------------------

    async def _apply_retention(self, bucket: ObjectStore) -> None:
        now = self._clock()
        expired = await asyncio.to_thread(self.queue.clips_ended_before, now - self._retention_s)
        for clip_id in expired:
            if await asyncio.to_thread(self._store.is_held, clip_id, now):
                logger.info("backup.delete_refused clip_id=%s reason=release_hold", clip_id)
                continue
            objects = await asyncio.to_thread(self.queue.clip_objects, clip_id)
            for item in objects:
                await bucket.delete(item.name)
                await asyncio.to_thread(self.queue.mark, item, "deleted", now)
            await asyncio.to_thread(
                self._audit.append,
                "backup.deleted",
                clip_id=clip_id,
                object_count=len(objects),
                reason="retention_age",
            )
            logger.info("backup.deleted clip_id=%s objects=%d", clip_id, len(objects))

    # -- health ------------------------------------------------------------------------------

    def _succeeded(self) -> None:
        self._last_success = self._clock()
        if self._failing:
            self._failing = False
            logger.info("backup.recovered target=%s", self.address)
            self._emit("backup.recovered", target=str(self.address))

    def _failed(self, exc: DoorwardError) -> None:
        message = str(exc)
        changed = message != self._last_error or not self._failing
        self._last_error, self._last_error_s = message, self._clock()
        self._failing = True
        if changed:
            level = logging.WARNING if isinstance(exc, StoreFull) else logging.ERROR
            logger.log(level, "backup.failed error=%s detail=%s", type(exc).__name__, message)
            self._emit("backup.failed", error=type(exc).__name__, message=message)

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._publish is not None:
            self._publish(kind, **fields)


def store_device_id(device_key: Any) -> str:
    """The device id of an Ed25519 private key (the default prefix is made from it)."""
    from crypto.keys import device_id

    return device_id(device_key.public_key())


def _read_segment(path: Path) -> tuple[bytes | None, str, bytes]:
    """The segment file's bytes (None once it is gone), its payload's SHA-256 (hex; empty when
    it is no longer an age file) and the whole file's SHA-256 (for the PUT's checksum)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "", b""
    try:
        payload = age.payload_sha256(data).hex()
    except DoorwardError:
        payload = ""
    return data, payload, hashlib.sha256(data).digest()
