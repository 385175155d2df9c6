"""The owner's side of the off-site backup: list, verify and restore a device's clips from the
bucket with read-only credentials, the doorbell gone or not.

Common case::

    async with ObjectStore(address, credentials) as store:
        reader = BackupReader(store, device_id=..., device_key=..., identities=[...],
                              held_checkpoint=profile_checkpoint_text)
        report = await reader.verify()                  # or .restore(out_dir)
        for problem in report.problems: print(problem)  # "seg/…: missing (segment 3 of clip …)"

What is checked (``hub.offsite.layout`` says what each object is): every manifest's signature
against the device key pinned at pairing, and its device id; every segment object's presence, size
and payload SHA-256 (equal to its name and to the manifest's entry); the latest checkpoint's
signature; the log batches, decrypted, contiguous and hashing to that checkpoint's root and to the
root of the checkpoint the profile holds (``_backup_log``); and each finished clip's manifest
SHA-256 against its ``clip.sealed`` entry. Segments that ``clip.deleted`` or ``backup.deleted``
entries account for, and those of clips the device skipped (``backup.skipped``: its upload queue
was full), are notes, not problems; such a clip is restored with a gap.

A restored clip is written as ``<clip-id>.ts`` (the segments decrypted and joined, as
``doorward owner view`` does) under a temporary name first, and renamed only once each of its
segments verified and decrypted; a clip that fails leaves nothing behind. Segments are streamed:
memory does not grow with a clip's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent import ClipManifest, ClipManifestInvalid
from consent.clip_manifest import MAX_CLIP_MANIFEST_BYTES
from crypto import age
from crypto.errors import DoorwardError
from crypto.files import write_atomic
from hub.client._backup_log import LogCheck, Problem, check_log
from hub.offsite.layout import is_manifest_name, segment_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.target import BucketAddress, Credentials, OffsiteError, StoreUnreachable

__all__ = [
    "MEMORY_SEGMENT_BYTES",
    "BackupClip",
    "BackupReader",
    "BackupReport",
    "BackupSettings",
    "Problem",
    "load_settings",
    "save_settings",
]

logger = logging.getLogger(__name__)

SETTINGS_FILE = "backup.json"
_HEADER_SCAN_BYTES = 1024 * 1024  # an age header for a few owners is a few kB
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_GET_ATTEMPTS = 3
_PARALLEL_GETS = 8
MEMORY_SEGMENT_BYTES = 32 * 1024 * 1024  # larger segments are spooled to disk
_RETRY_S = 1.0


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """Where a device's backup is and which credentials file reads it (``None``: the AWS_*
    environment). The profile keeps the file's path, never the keys themselves."""

    endpoint: str
    bucket_url: str
    region: str = "us-east-1"
    credentials_file: Path | None = None

    def address(self) -> BucketAddress:
        """The bucket and prefix; OffsiteError if the URL or endpoint is malformed."""
        return BucketAddress.parse(self.bucket_url, endpoint=self.endpoint, region=self.region)

    def credentials(self) -> Credentials:
        """The owner's read keys, from the file (0600) or the environment."""
        return Credentials.load(self.credentials_file)

    def to_json(self) -> dict[str, Any]:
        """This record as ``backup.json`` stores it."""
        return {
            "endpoint": self.endpoint,
            "bucket": self.bucket_url,
            "region": self.region,
            "credentials_file": None
            if self.credentials_file is None
            else str(self.credentials_file),
        }

    @classmethod
    def from_json(cls, data: Any) -> BackupSettings:
        """Read a ``backup.json`` record; OffsiteError if it is malformed."""
        try:
            creds = data.get("credentials_file")
            settings = cls(
                str(data["endpoint"]),
                str(data["bucket"]),
                str(data.get("region") or "us-east-1"),
                Path(creds) if isinstance(creds, str) else None,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise OffsiteError(f"backup settings record is malformed: {exc}") from None
        settings.address()
        return settings


def load_settings(profile_dir: Path, device_id: str) -> BackupSettings | None:
    """The saved settings for ``device_id`` in the profile, or None."""
    path = Path(profile_dir) / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes()[: 1024 * 1024])
    except (OSError, ValueError) as exc:
        raise OffsiteError(f"cannot read {path}: {exc}") from None
    record = data.get("devices", {}).get(device_id) if isinstance(data, dict) else None
    return None if record is None else BackupSettings.from_json(record)


def save_settings(profile_dir: Path, device_id: str, settings: BackupSettings) -> Path:
    """Remember ``settings`` for ``device_id`` in the profile's ``backup.json`` (0600)."""
    path = Path(profile_dir) / SETTINGS_FILE
    data: dict[str, Any] = {"devices": {}}
    if path.exists():
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_bytes())
            if isinstance(loaded, dict) and isinstance(loaded.get("devices"), dict):
                data = loaded
    data["devices"][device_id] = settings.to_json()
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)
    return path


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupClip:
    """A clip as its uploaded manifest (object ``name``) tells it; ``seal`` is ``sealed`` (the
    verified log seals this very manifest), ``unconfirmed`` (finished, but no seal in the
    verified log yet), ``recording`` (the device never finished it) or ``unchecked`` (listing
    only)."""

    name: str
    manifest: ClipManifest
    manifest_sha256: str
    seal: str = "unchecked"

    @property
    def clip_id(self) -> str:
        """The device's clip id."""
        return self.manifest.clip_id

    @property
    def bytes(self) -> int:
        """Sum of the segments' stored sizes."""
        return sum(s.size for s in self.manifest.segments)

    def to_json(self) -> dict[str, Any]:
        """A row of ``--json`` output."""
        m = self.manifest
        return {
            "clip_id": m.clip_id,
            "camera": m.camera,
            "start": m.start_ms / 1000,
            "end": None if m.end_ms is None else m.end_ms / 1000,
            "segments": len(m.segments),
            "bytes": self.bytes,
            "finished": m.end_ms is not None,
            "seal": self.seal,
            "manifest": self.name,
        }


@dataclass(slots=True)
class BackupReport:
    """What a verify or restore found: the clips, the log check, problems (each fails the run),
    notes (worth knowing, not failures), and for a restore the files written per clip id."""

    clips: list[BackupClip] = field(default_factory=list)
    log: LogCheck = field(default_factory=LogCheck)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objects: int = 0
    bytes_read: int = 0
    restored: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.problems


# -- the reader ----------------------------------------------------------------------------------


class BackupReader:
    """Lists, verifies and restores one device's backup through ``store`` (read credentials)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        device_id: str,
        device_key: Ed25519PublicKey,
        identities: Sequence[age.Identity],
        held_checkpoint: str | None = None,
        memory_segment_bytes: int = MEMORY_SEGMENT_BYTES,
    ) -> None:
        """``device_key`` is the one pinned at pairing; ``held_checkpoint`` the audit checkpoint
        the profile accepted last (None if it never audited). While restoring, a segment waits
        for its decryption in memory up to ``memory_segment_bytes``, else in a spool file."""
        self._store = store
        self._device_id = device_id
        self._device_key = device_key
        self._identities = list(identities)
        self._held = held_checkpoint
        self._memory_segment_bytes = memory_segment_bytes

    async def list_clips(self) -> tuple[list[BackupClip], list[Problem]]:
        """The clips of every manifest whose signature verifies (oldest first), and the problems
        of those that do not."""
        objects = await self._objects()
        clips, problems = await self._manifests(objects)
        return clips, problems

    async def verify(self, clip_ids: Sequence[str] | None = None) -> BackupReport:
        """Check every object (see the module doc); with ``clip_ids``, only those clips'
        segments (the log and every manifest are always checked)."""
        return await self._run(clip_ids, None)

    async def restore(self, out_dir: Path, clip_ids: Sequence[str] | None = None) -> BackupReport:
        """Verify as :meth:`verify` does and write each clip that verified to ``out_dir``."""
        await asyncio.to_thread(Path(out_dir).mkdir, parents=True, exist_ok=True)
        return await self._run(clip_ids, Path(out_dir))

    # -- steps ---------------------------------------------------------------------------------

    async def _run(self, clip_ids: Sequence[str] | None, out_dir: Path | None) -> BackupReport:
        report = BackupReport()
        objects = await self._objects()
        report.objects = len(objects)
        (clips, report.problems), report.log = await asyncio.gather(
            self._manifests(objects),
            check_log(
                self._store,
                objects,
                device_key=self._device_key,
                identities=self._identities,
                held_checkpoint=self._held,
            ),
        )
        report.problems.extend(report.log.problems)
        clips = self._judge_seals(clips, report)
        self._missing_manifests(clips, report)
        wanted = set(clip_ids) if clip_ids is not None else None
        if wanted is not None:
            unknown = wanted - {c.clip_id for c in clips}
            for clip_id in sorted(unknown):
                report.problems.append(
                    Problem(f"clip {clip_id}", "no manifest of it in the bucket")
                )
        referenced: set[str] = set()
        for clip in clips:
            referenced.update(segment_name(s.payload_sha256) for s in clip.manifest.segments)
            if wanted is not None and clip.clip_id not in wanted:
                continue
            report.clips.append(clip)
            await self._clip(clip, objects, report, out_dir)
        orphans = [n for n in objects if n.startswith("seg/") and n not in referenced]
        if orphans and wanted is None:
            report.notes.append(
                f"{len(orphans)} segment objects no manifest names (uploaded ahead of their "
                "manifest, or left by a deleted clip)"
            )
        if report.log.uncovered_entries:
            report.notes.append(
                f"{report.log.uncovered_entries} audit entries are uploaded but not yet covered "
                "by a checkpoint"
            )
        return report

    async def _objects(self) -> dict[str, int]:
        listing = await _retrying(self._store.list)
        return {item.name: item.size for item in listing}

    async def _manifests(self, objects: dict[str, int]) -> tuple[list[BackupClip], list[Problem]]:
        names = sorted(n for n in objects if n.startswith("man/"))
        gate = asyncio.Semaphore(_PARALLEL_GETS)
        results = await asyncio.gather(*(self._manifest(name, gate) for name in names))
        clips = [r for r in results if isinstance(r, BackupClip)]
        problems = [r for r in results if isinstance(r, Problem)]
        clips.sort(key=lambda c: (c.manifest.start_ms, c.clip_id))
        return clips, problems

    async def _manifest(self, name: str, gate: asyncio.Semaphore) -> BackupClip | Problem:
        if not is_manifest_name(name):
            return Problem(name, "is not a manifest name the device writes")
        try:
            async with gate:
                data = await _retrying(
                    lambda: self._store.get_bytes(name, max_size=MAX_CLIP_MANIFEST_BYTES)
                )
            manifest = ClipManifest.verify(data, self._device_key)
        except StoreUnreachable:
            raise
        except (ClipManifestInvalid, DoorwardError) as exc:
            return Problem(name, f"not a clip manifest signed by the paired device: {exc}")
        if manifest.device_id != self._device_id:
            return Problem(name, f"is signed for device {manifest.device_id[:64]!r}, not this one")
        if not _SAFE_ID.fullmatch(manifest.clip_id):
            return Problem(name, "names a clip id that cannot be a file name")
        return BackupClip(name, manifest, hashlib.sha256(data).hexdigest())

    def _judge_seals(self, clips: list[BackupClip], report: BackupReport) -> list[BackupClip]:
        """Give each clip its seal state; a manifest other than the sealed one is a problem and
        drops the clip; a second manifest of one clip is a problem too."""
        sealed = report.log.sealed
        kept: dict[str, BackupClip] = {}
        for clip in clips:
            digest = sealed.get(clip.clip_id)
            if digest is not None and digest != clip.manifest_sha256:
                report.problems.append(
                    Problem(
                        clip.name,
                        f"clip {clip.clip_id}: this manifest (SHA-256 {clip.manifest_sha256[:16]}…) "
                        f"is not the one the audit log sealed ({digest[:16]}…): an older or "
                        "re-signed version",
                    )
                )
                continue
            if digest is not None:
                state = "sealed"
            elif clip.manifest.end_ms is None:
                state = "recording"
            else:
                state = "unconfirmed"
            if clip.clip_id in kept:
                report.problems.append(
                    Problem(clip.name, f"a second manifest of clip {clip.clip_id}")
                )
                continue
            kept[clip.clip_id] = BackupClip(clip.name, clip.manifest, clip.manifest_sha256, state)
        return list(kept.values())

    def _missing_manifests(self, clips: list[BackupClip], report: BackupReport) -> None:
        present = {c.clip_id for c in clips}
        log = report.log
        for clip_id in sorted(set(log.sealed) - present - log.deleted_clips):
            report.problems.append(
                Problem(
                    f"man/… (clip {clip_id})",
                    "missing: the audit log seals this clip but no manifest of it is in the bucket",
                )
            )

    async def _clip(
        self,
        clip: BackupClip,
        objects: dict[str, int],
        report: BackupReport,
        out_dir: Path | None,
    ) -> None:
        """Check (and with ``out_dir``, restore) one clip's segments. The next segment downloads
        while the current one is decrypted, so the store and this process work at once."""
        log = report.log
        failed = False
        gaps = 0
        present: list[tuple[str, Any, str]] = []
        for segment in clip.manifest.segments:
            name = segment_name(segment.payload_sha256)
            where = f"segment {segment.index} of clip {clip.clip_id}"
            if name not in objects:
                if clip.clip_id in log.deleted_clips or name in log.deleted_names:
                    report.notes.append(f"{name}: deleted by the device ({where})")
                    gaps += 1
                elif clip.clip_id in log.skipped_clips:
                    report.notes.append(f"{name}: never uploaded, the device skipped it ({where})")
                    gaps += 1
                else:
                    report.problems.append(Problem(name, f"missing ({where})"))
                    failed = True
            elif objects[name] != segment.size:
                report.problems.append(
                    Problem(
                        name,
                        f"is {objects[name]} bytes but the manifest says {segment.size} "
                        f"({where}): truncated or altered",
                    )
                )
                failed = True
            else:
                present.append((name, segment, where))
        final = tmp = None
        out: IO[bytes] | None = None
        if out_dir is not None and not failed and present:
            final = out_dir / f"{clip.clip_id}.ts"
            tmp = out_dir / f".{clip.clip_id}.ts.partial"
            out = open(tmp, "wb")  # noqa: SIM115, ASYNC230 - closed below, written by a thread
        spools = [out_dir / f".{clip.clip_id}.{i}.spool" for i in (0, 1)] if out_dir else []
        fetches: dict[int, asyncio.Task[str | None]] = {}
        sinks: dict[int, IO[bytes]] = {}

        def start(i: int) -> None:
            name, segment, _ = present[i]
            sink = (
                _sink(spools[i % 2], segment.size, self._memory_segment_bytes)
                if out is not None
                else None
            )
            if sink is not None:
                sinks[i] = sink
            fetches[i] = asyncio.create_task(self._fetch_segment(name, segment, sink, report))

        try:
            if present:
                start(0)
            for i, (name, _, where) in enumerate(present):
                if i + 1 < len(present):
                    start(i + 1)
                problem = await fetches.pop(i)
                sink = sinks.pop(i, None)
                if problem is not None:
                    report.problems.append(Problem(name, f"{problem} ({where})"))
                    failed = True
                if out is not None and sink is not None and not failed:
                    unreadable = await asyncio.to_thread(
                        _decrypt_into, self._identities, sink, out, name, where
                    )
                    if unreadable is not None:
                        report.problems.append(unreadable)
                        failed = True
                elif sink is not None:
                    sink.close()
        finally:
            for task in fetches.values():
                task.cancel()
            for task in fetches.values():
                with contextlib.suppress(BaseException):
                    await task
            for sink in sinks.values():
                sink.close()
            if out is not None:
                out.close()
            for spool in spools:
                spool.unlink(missing_ok=True)
        if not clip.manifest.segments and out_dir is not None:
            report.notes.append(f"clip {clip.clip_id} has no segments: nothing to restore")
        if tmp is None or final is None:
            return
        if failed:
            tmp.unlink(missing_ok=True)
            return
        os.replace(tmp, final)
        report.restored[clip.clip_id] = final
        if gaps:
            report.notes.append(
                f"clip {clip.clip_id} restored without the {gaps} segments the log says the "
                "device deleted or skipped: the video has gaps"
            )

    async def _fetch_segment(
        self, name: str, segment: Any, sink: IO[bytes] | None, report: BackupReport
    ) -> str | None:
        """Stream ``name`` (into ``sink`` when restoring) and check its size and payload hash."""
        for attempt in range(_GET_ATTEMPTS):
            try:
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()
                return await self._fetch_once(name, segment, sink, report)
            except StoreUnreachable:
                if attempt + 1 == _GET_ATTEMPTS:
                    raise
                await asyncio.sleep(_RETRY_S * (attempt + 1))
            except OffsiteError as exc:
                return str(exc)
        raise AssertionError("unreachable")

    async def _fetch_once(
        self, name: str, segment: Any, sink: IO[bytes] | None, report: BackupReport
    ) -> str | None:
        digest = hashlib.sha256()
        head = bytearray()
        header_len: int | None = None
        size = 0
        async for chunk in self._store.stream(name):
            size += len(chunk)
            if size > segment.size:
                return f"is longer than the {segment.size} bytes the manifest says"
            if sink is not None:
                sink.write(chunk)
            if header_len is not None:
                if header_len >= 0:
                    digest.update(chunk)
                continue
            head += chunk
            header_len = _header_length(head, final=False)
            if header_len is not None:
                if header_len >= 0:
                    digest.update(memoryview(head)[header_len:])
                head = bytearray()
        report.bytes_read += size
        if size != segment.size:
            return f"is {size} bytes but the manifest says {segment.size}: truncated"
        if header_len is None:
            header_len = _header_length(head, final=True)
            if header_len is not None and header_len >= 0:
                digest.update(memoryview(head)[header_len:])
        if header_len is None or header_len < 0:
            return "is not an age file (no readable header): altered"
        found = digest.hexdigest()
        if found != segment.payload_sha256:
            return (
                f"its payload SHA-256 is {found[:16]}…, not {segment.payload_sha256[:16]}… as its "
                "name and the manifest say: altered"
            )
        return None


def _header_length(head: bytearray, *, final: bool) -> int | None:
    """The age header's length once ``head`` holds all of it; None: read more; -1: there is no
    valid header (``final``: the object ended, or the scan limit was passed)."""
    if not final and len(head) < _HEADER_SCAN_BYTES and b"\n--- " not in head:
        return None
    try:
        return len(age.read_header(io.BytesIO(bytes(head[:_HEADER_SCAN_BYTES]))))
    except DoorwardError:
        return -1 if final or len(head) >= _HEADER_SCAN_BYTES else None


def _sink(spool: Path, size: int, memory_bytes: int) -> IO[bytes]:
    """Where a segment waits between its download and its decryption: memory when it is small
    (a segment is bounded, whatever the clip's length), else a spool file."""
    if size <= memory_bytes:
        return io.BytesIO()
    return open(spool, "w+b")  # closed by the decryption or the caller


def _decrypt_into(
    identities: Sequence[age.Identity], src: IO[bytes], out: IO[bytes], name: str, where: str
) -> Problem | None:
    """Decrypt the downloaded segment onto the end of ``out`` (run in a thread); closes ``src``."""
    try:
        src.seek(0)
        age.decrypt(identities, src, out)  # type: ignore[arg-type]
    except DoorwardError as exc:
        return Problem(name, f"cannot be decrypted with this owner's identity: {exc} ({where})")
    finally:
        src.close()
    return None


async def _retrying(call: Any) -> Any:
    for attempt in range(_GET_ATTEMPTS):
        try:
            return await call()
        except StoreUnreachable:
            if attempt + 1 == _GET_ATTEMPTS:
                raise
            await asyncio.sleep(_RETRY_S * (attempt + 1))
    raise AssertionError("unreachable")
