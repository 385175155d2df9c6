"""The off-site backup: the uploader against a bare PUT loop, its lag while recording 1080p, its
CPU per recorded second, and the owner's restore against a plain download.

    python bench/backup.py [--json] [--segments 60] [--rounds 5] [--lag-seconds 60]

Everything runs against a SeaweedFS S3 server on loopback (``hub.offsite.seaweed``, another
process: its CPU counts on no side), with the device's own credentials (write-only under its
prefix).

- ``upload_vs_raw_put``: a device (its real clip store, one owner) holds ``--segments`` segments
  of 1 MiB of payload each, age-encrypted to the owner (a 4 Mb/s camera writes 1 MB per 2-second
  segment), in clips of 10. The subject is ``OffsiteBackup`` draining them from a fresh queue
  (``backup.db`` removed before each run): it reads the store, fills the SQLite queue, uploads
  every segment and one manifest per clip, marking each done. The anchor is the same
  ``ObjectStore`` with the same credentials reading each segment file and ``put_bytes``-ing it
  under the same name, in a loop. Both times include opening the client, and stop when the last
  object's PUT returned. Throughput is segment bytes over wall time (the subject's manifests are
  its overhead); the figure is the median over ``--rounds`` rounds of subject over anchor in the
  same round, the order alternating from round to round, after one warm-up round of each. Goal
  >= 0.9.
- ``uploader_cpu_share``: this process's CPU time (every thread: the event loop, the uploader's
  worker threads, the HTTP client) while the subject drains, over the recorded seconds the
  segments stand for (2 s each); the lowest of the rounds. ``raw_put_cpu_share`` is the same of
  the anchor. Goal <= 0.02. A recording camera's clip grows, so its re-signed manifest goes up
  after each segment: ``uploader_cpu_share_live`` is the uploader's CPU per recorded second for
  ``--live-segments`` segments written one at a time into one open clip, each announced as the
  pipeline does (``notice``) and uploaded with the manifest before the next is written (the
  writing's own CPU, measured in its thread, left out).
- ``backup_lag_p50_s`` / ``backup_lag_p95_s``: a real ``doorward serve --backup`` process records
  a 1080p30 H.264 file of ``--video-seconds`` (rendered once, up front, at ~4 Mb/s with keyframes
  every 2 s: a still textured scene with sensor noise and a block crossing it, so motion never
  stops), replayed by
  the file camera in real time and looped, ``segment_s = 2``, for ``--lag-seconds``. Then the
  device's ``backup.db`` gives, for every segment, ``queued_s`` (when the uploader queued it) and
  ``done_s`` (when its PUT returned); the lag is ``done_s`` minus the segment file's mtime (its last
  write, when the segmenter closed it), and ``backup_queue_delay_p95_s`` is ``queued_s`` minus that
  mtime (how late the uploader learns of a segment). Goal p95 <= 3 s. One object goes in and out
  of the bucket before the device starts: SeaweedFS's first write to a bucket grows a volume
  (about a second), a cost of the fresh test server, not of the device. The figure counts only if
  ``lag_frames_dropped`` (``/metrics``) and ``lag_frames_behind`` (frames short of 30 per wall
  second between two ``/metrics`` reads: a file camera never drops, it falls behind) are 0, and
  ``lag_segments_not_uploaded`` (segments closed before the end but not in the bucket 10 s later)
  is 0.
- ``restore_vs_download``: from ``bench/_restore_bench.py`` when it is there (the owner's
  ``restore`` with its verification against a plain ``get_file`` of the same objects); without it
  the figure is left out with a note.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
sys.path.insert(0, str(_REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

from bench._process import stop_process  # noqa: E402
from crypto import age  # noqa: E402
from crypto.keys import KeyBundle  # noqa: E402
from device import RecorderConfig  # noqa: E402
from device._encoder import H264Encoder  # noqa: E402
from device.events import ClipFinished, SegmentWritten  # noqa: E402
from device.store import SegmentRecord  # noqa: E402
from hub.offsite import layout  # noqa: E402
from hub.offsite.s3 import ObjectStore  # noqa: E402
from hub.offsite.seaweed import SeaweedServer, seaweed_server, write_credentials_file  # noqa: E402
from hub.offsite.target import Credentials  # noqa: E402
from hub.server.backup import OffsiteBackup  # noqa: E402
from hub.server.config import BackupConfig  # noqa: E402
from hub.server.state import Device  # noqa: E402

_SEGMENT_BYTES = 1024 * 1024
_SEGMENT_S = 2.0
_SEGMENTS_PER_CLIP = 10
_T0 = 1_767_268_800.0
_BUCKET = "evidence"
_PREFIX = "bench"
_FPS = 30
_BITRATE_KBPS = 4000
_START_TIMEOUT_S = 90.0
_DRAIN_TIMEOUT_S = 300.0
_SETTLE_S = 10.0  # after the lag run, how long segments closed before its end may take to upload
_POLL_S = 0.02


# -- the uploader against a bare PUT loop (in this process) -----------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the subject or the anchor: wall seconds and this process's CPU seconds."""

    wall_s: float
    cpu_s: float


def write_segment(
    store: Any, recipients: list[Any], clip_id: str, index: int, start_s: float
) -> SegmentRecord:
    """Segment ``index`` of the clip: 1 MiB of random payload, encrypted and committed."""
    file = store.open_segment(clip_id, index)
    with age.Encryptor(file, recipients) as encryptor:
        encryptor.write(os.urandom(_SEGMENT_BYTES))
    return store.commit_segment(  # type: ignore[no-any-return]
        clip_id,
        index,
        file,
        start_s=start_s + _SEGMENT_S * index,
        duration_s=_SEGMENT_S,
        payload_sha256=encryptor.payload_sha256,
    )


def write_segments(device: Device, owner: KeyBundle, count: int) -> list[tuple[str, Path]]:
    """``count`` segments of 1 MiB of random payload in clips of 10, encrypted to ``owner``;
    returns each segment's object name and file."""
    store = device.store
    recipients = [owner.age_identity.recipient()]
    written: list[tuple[str, Path]] = []
    for first in range(0, count, _SEGMENTS_PER_CLIP):
        start_s = _T0 + first * _SEGMENT_S
        clip_id = store.open_clip("front", start_s)
        segments = min(_SEGMENTS_PER_CLIP, count - first)
        for index in range(segments):
            write_segment(store, recipients, clip_id, index, start_s)
        store.finish_clip(clip_id, start_s + _SEGMENT_S * segments)
        written.extend(
            (layout.segment_name(seg.payload_sha256), seg.path)
            for seg in store.list_segments(clip_id)
        )
    return written


class UploadBench:
    """The subject (the device's uploader) and the anchor (a PUT loop) on the same segments."""

    def __init__(
        self, device: Device, server: SeaweedServer, credentials: Path, count: int
    ) -> None:
        self.device = device
        self.server = server
        self.credentials = credentials
        self.address = server.address()
        self.config = BackupConfig(
            endpoint=self.address.endpoint,
            bucket=self.address.bucket,
            prefix=self.address.prefix,
            credentials_file=credentials,
        )
        self.segments: list[tuple[str, Path]] = []
        self.clips = 0
        self.count = count

    def prepare(self, owner: KeyBundle) -> None:
        self.segments = write_segments(self.device, owner, self.count)
        self.clips = -(-self.count // _SEGMENTS_PER_CLIP)

    @property
    def segment_bytes(self) -> int:
        return sum(path.stat().st_size for _, path in self.segments)

    async def anchor(self) -> Run:
        """The same client and credentials, each file read and PUT in turn."""
        cpu0, wall0 = time.process_time(), time.perf_counter()
        credentials = await asyncio.to_thread(Credentials.load, self.credentials)
        async with ObjectStore(self.address, credentials) as bucket:
            for name, path in self.segments:
                data = await asyncio.to_thread(path.read_bytes)
                await bucket.put_bytes(name, data)
        return Run(time.perf_counter() - wall0, time.process_time() - cpu0)

    async def subject(self) -> Run:
        """``OffsiteBackup`` draining the store from a fresh queue."""
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.device.data_dir / f"backup.db{suffix}").unlink()
        expected = len(self.segments) + self.clips
        cpu0, wall0 = time.process_time(), time.time()
        backup = self._backup()
        task = asyncio.ensure_future(backup.run())
        try:
            deadline = time.monotonic() + _DRAIN_TIMEOUT_S
            while True:
                totals = backup.queue.totals()
                if totals.queued_objects == 0 and totals.done_objects >= expected:
                    break
                if task.done() or time.monotonic() > deadline:
                    raise RuntimeError(f"the uploader did not drain: {backup.status()}")
                await asyncio.sleep(_POLL_S)
            cpu_s = time.process_time() - cpu0
            last_done = _last_done_s(self.device.data_dir / "backup.db")
            error = backup.status().last_error
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            backup.close()
        if error is not None:
            raise RuntimeError(f"the uploader failed: {error}")
        return Run(last_done - wall0, cpu_s)

    async def live(self, owner: KeyBundle, count: int) -> Run:
        """The uploader as it runs while recording: ``count`` segments written one at a time
        into one clip, each announced as the pipeline does and uploaded with the clip's
        re-signed manifest before the next; this process's CPU less the writing's (measured in
        the writing thread)."""
        backup = self._backup()
        task = asyncio.ensure_future(backup.run())
        store = self.device.store
        recipients = [owner.age_identity.recipient()]
        start_s = _T0 + 86400
        try:
            await self._idle(backup, task)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            writing_s = 0.0
            clip_id = store.open_clip("front", start_s)
            for index in range(count):
                seg, cpu_s = await asyncio.to_thread(
                    _thread_cpu, write_segment, store, recipients, clip_id, index, start_s
                )
                writing_s += cpu_s
                backup.notice(SegmentWritten("front", clip_id, index, seg.size))
                await self._manifest_up(backup, task, clip_id)
            end_s = start_s + _SEGMENT_S * count
            _, cpu_s = await asyncio.to_thread(_thread_cpu, store.finish_clip, clip_id, end_s)
            writing_s += cpu_s
            backup.notice(ClipFinished("front", clip_id, end_s, count))
            await self._manifest_up(backup, task, clip_id)
            run = Run(time.perf_counter() - wall0, time.process_time() - cpu0 - writing_s)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            backup.close()
        return run

    def _backup(self) -> OffsiteBackup:
        return OffsiteBackup(
            self.config,
            data_dir=self.device.data_dir,
            store=self.device.store,
            audit=self.device.audit,
            owners=self.device.owners,
            device_key=self.device.identity.private_key,
            retention_days=36500,
        )

    async def _idle(self, backup: OffsiteBackup, task: asyncio.Future[None]) -> None:
        """Until nothing is queued (a segment noticed but not yet read counts as queued)."""
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while backup.status().queued_objects:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError(f"the uploader did not drain: {backup.status()}")
            await asyncio.sleep(_POLL_S)

    async def _manifest_up(
        self, backup: OffsiteBackup, task: asyncio.Future[None], clip_id: str
    ) -> None:
        """Until the clip's current manifest (so every segment before it) is in the bucket."""
        sha = hashlib.sha256(self.device.store.manifest_bytes(clip_id)).hexdigest()
        db = sqlite3.connect(f"file:{self.device.data_dir / 'backup.db'}?mode=ro", uri=True)
        try:
            deadline = time.monotonic() + _DRAIN_TIMEOUT_S
            while True:
                row = db.execute(
                    "SELECT c.manifest_sha256, o.state FROM backup_clips c JOIN backup_objects o "
                    "ON o.clip_id = c.clip_id AND o.kind = 'manifest' WHERE c.clip_id = ?",
                    (clip_id,),
                ).fetchone()
                if row == (sha, "done"):
                    return
                if task.done() or time.monotonic() > deadline:
                    raise RuntimeError(f"the uploader did not drain: {backup.status()}")
                await asyncio.sleep(_POLL_S)
        finally:
            db.close()

    async def rounds(self, rounds: int) -> tuple[list[Run], list[Run]]:
        """A warm-up of each, then ``rounds`` rounds, the order alternating."""
        await self.anchor()
        await self.subject()
        subjects: list[Run] = []
        anchors: list[Run] = []
        for round_ in range(rounds):
            if round_ % 2 == 0:
                subjects.append(await self.subject())
                anchors.append(await self.anchor())
            else:
                anchors.append(await self.anchor())
                subjects.append(await self.subject())
        return subjects, anchors


def _thread_cpu(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the CPU seconds it took this thread."""
    start = time.thread_time()
    result = fn(*args)
    return result, time.thread_time() - start


def _last_done_s(db_path: Path) -> float:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT MAX(done_s) FROM backup_objects WHERE state = 'done'").fetchone()
    finally:
        db.close()
    return float(row[0])


def upload_figures(count: int, rounds: int, live_segments: int) -> dict[str, Any]:
    """``upload_vs_raw_put``, ``uploader_cpu_share`` and what they are made of."""
    with tempfile.TemporaryDirectory(prefix="doorward-backup-bench-") as tmp:
        root = Path(tmp)
        owner = KeyBundle.generate("x25519")
        device = Device.open(root / "device")
        try:
            device.owners.add(owner.public(), name="bench", now=int(time.time()))
            with seaweed_server(root / "seaweed", _BUCKET, _PREFIX) as server:
                credentials = write_credentials_file(
                    root / "device.credentials", server.identities.device
                )
                bench = UploadBench(device, server, credentials, count)
                bench.prepare(owner)
                subjects, anchors = asyncio.run(bench.rounds(rounds))
                live = asyncio.run(bench.live(owner, live_segments))
                size = bench.segment_bytes
                clips = bench.clips
        finally:
            device.close()
    recorded_s = count * _SEGMENT_S
    mb = size / 1e6
    return {
        "upload_vs_raw_put": round(
            statistics.median(a.wall_s / s.wall_s for s, a in zip(subjects, anchors, strict=True)),
            3,
        ),
        "upload_MBps": round(mb / min(s.wall_s for s in subjects), 1),
        "raw_put_MBps": round(mb / min(a.wall_s for a in anchors), 1),
        "uploader_cpu_share": round(min(s.cpu_s for s in subjects) / recorded_s, 4),
        "raw_put_cpu_share": round(min(a.cpu_s for a in anchors) / recorded_s, 4),
        "uploader_cpu_share_live": round(live.cpu_s / (live_segments * _SEGMENT_S), 4),
        "upload_segments": count,
        "upload_clips": clips,
        "upload_MB": round(mb, 1),
        "upload_rounds": rounds,
    }


# -- the lag while recording 1080p (a doorward serve process) ---------------------------------


def render_video(path: Path, seconds: float) -> float:
    """A 1080p30 H.264 MPEG-TS of ``seconds``: a textured still scene with sensor noise and a block crossing it,
    at ~4 Mb/s with a keyframe every 2 s; returns its bitrate in Mb/s."""
    width, height = 1920, 1080
    config = RecorderConfig(bitrate_kbps=_BITRATE_KBPS, keyframe_interval_s=2.0)
    encoder = H264Encoder(width, height, Fraction(_FPS), config)
    rng = np.random.default_rng(12)
    # A still scene textured in 8x8 blocks (a panning one would be a light change to the motion
    # detector: the whole picture changing at once).
    texture = rng.integers(40, 210, (height // 8, width // 8), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, axis=0), 8, axis=1)
    # Sensor noise (a few planes, cycled) keeps the encoder near its bitrate, as a camera is.
    noise = rng.integers(0, 24, (7, height, width), dtype=np.uint8)
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    frames = round(seconds * _FPS)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_mux_stream("h264", rate=_FPS, width=width, height=height)
        for index in range(frames + 1):
            if index < frames:
                y = texture + noise[index % len(noise)]
                bx = (index * 24) % (width - 240)
                y[height // 3 : height // 3 + 360, bx : bx + 240] = 235
                packets = encoder.encode(y, chroma, chroma, index / _FPS, index / _FPS)
            else:
                packets = encoder.flush()
            for packet in packets:
                out = av.Packet(packet.data)
                out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
                out.stream = stream
                container.mux(out)
    return path.stat().st_size * 8 / seconds / 1e6


@dataclass
class Serving:
    """The ``doorward serve`` process under test, as its owner reaches it."""

    process: asyncio.subprocess.Process
    url: str
    device_id: str
    fingerprint: str
    owner: KeyBundle

    async def metrics(self) -> tuple[dict[str, int], float]:
        """The camera's counters and when they were read (the middle of the call)."""
        from hub.client import DoorwardClient

        async with DoorwardClient(
            self.url,
            fingerprint=self.fingerprint,
            device_id=self.device_id,
            key=self.owner.signing_key,
            timeout_s=10.0,
        ) as phone:
            asked = time.monotonic()
            counters = dict((await phone.metrics())["cameras"]["front"])
            return counters, (asked + time.monotonic()) / 2


async def start_serve(work: Path, video: Path, server: SeaweedServer) -> Serving:
    data = work / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    try:
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        device_id, fingerprint = device.identity.device_id, device.fingerprint
    finally:
        device.close()
    config = work / "serve.toml"
    config.write_text(f"segment_s = {_SEGMENT_S}\npre_roll_s = 2.0\npost_roll_s = 2.0\n")
    credentials = write_credentials_file(work / "device.credentials", server.identities.device)
    address = server.address()
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NOTIFY_SOCKET"):
        env.pop(name, None)
    with (work / "serve.log").open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli.main", "-v", "serve", "--config", str(config),
            "--data", str(data), "--camera", f"front={video}",
            "--host", "127.0.0.1", "--port", "0", "--no-advertise",
            "--backup", f"s3://{address.bucket}/{address.prefix}",
            "--backup-endpoint", address.endpoint, "--backup-credentials", str(credentials),
            stdout=subprocess.PIPE, stderr=err, cwd=_REPO, env=env,
        )  # fmt: skip
    assert process.stdout is not None
    line = b""
    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not line.startswith(b"doorward: serving "):
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError((work / "serve.log").read_text(errors="replace")[-3000:])
    except BaseException:
        await stop_process(process)
        raise
    return Serving(process, line.split()[2].decode(), device_id, fingerprint, owner)


def segment_rows(data: Path) -> list[tuple[float, float, float | None]]:
    """Every segment the uploader queued: (file mtime, queued_s, done_s or None)."""
    db = sqlite3.connect(f"file:{data / 'backup.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT path, queued_s, done_s, state FROM backup_objects WHERE kind = 'segment'"
        ).fetchall()
    finally:
        db.close()
    found = []
    for rel, queued_s, done_s, state in rows:
        with contextlib.suppress(FileNotFoundError):
            mtime = (data / rel).stat().st_mtime
            found.append((mtime, float(queued_s), float(done_s) if state == "done" else None))
    return found


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def lag_run(work: Path, video: Path, server: SeaweedServer, seconds: float) -> dict[str, Any]:
    serving = await start_serve(work, video, server)
    data = work / "data"
    try:
        await asyncio.sleep(3.0)  # the camera is up and recording
        before, before_s = await serving.metrics()
        await asyncio.sleep(seconds)
        after, after_s = await serving.metrics()
        end_s = time.time()
        deadline = time.monotonic() + _SETTLE_S
        while True:
            closed = [row for row in segment_rows(data) if row[0] <= end_s]
            if all(done is not None for _, _, done in closed) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    finally:
        await stop_process(serving.process)
    log = (work / "serve.log").read_text(errors="replace")
    lags = [done - mtime for mtime, _, done in closed if done is not None]
    queue_delays = [queued - mtime for mtime, queued, _ in closed]
    uploads = [done - queued for _, queued, done in closed if done is not None]
    frames = after["frames"] - before["frames"]
    return {
        "backup_lag_p50_s": round(_percentile(lags, 50), 3),
        "backup_lag_p95_s": round(_percentile(lags, 95), 3),
        "backup_lag_max_s": round(max(lags, default=float("nan")), 3),
        "backup_queued_to_done_p95_s": round(_percentile(uploads, 95), 3),
        "backup_queue_delay_p95_s": round(_percentile(queue_delays, 95), 3),
        "lag_segments": len(closed),
        "lag_segments_not_uploaded": sum(done is None for _, _, done in closed),
        "lag_frames_dropped": after["dropped_frames"] - before["dropped_frames"],
        "lag_frames_behind": max(0, round((after_s - before_s) * _FPS) - frames),
        "lag_pipeline_errors": log.count("pipeline.error"),
        "lag_backup_failures": log.count("backup.failed"),
        "lag_seconds": seconds,
    }


async def warm_up(server: SeaweedServer) -> None:
    """One object in and out of the bucket, so the store's first write (SeaweedFS grows a
    volume for the bucket, about a second) is not the first segment's."""
    async with ObjectStore(server.address(), server.identities.admin) as admin:
        await admin.put_bytes("warm-up", b"x" * 1024)
        await admin.delete("warm-up")


def lag_figures(seconds: float, video_seconds: float) -> dict[str, Any]:
    """``backup_lag_p95_s`` and what it depends on."""
    with tempfile.TemporaryDirectory(prefix="doorward-backup-lag-") as tmp:
        work = Path(tmp)
        video = work / "front-1080p.ts"
        mbps = render_video(video, video_seconds)
        with seaweed_server(work / "seaweed", _BUCKET, _PREFIX) as server:
            asyncio.run(warm_up(server))
            result = asyncio.run(lag_run(work, video, server, seconds))
    return {**result, "lag_camera": "file 1080p30 H.264", "lag_camera_Mbps": round(mbps, 2)}


# -- the owner's restore ----------------------------------------------------------------------


def restore_figures(clips: int, segments: int, rounds: int) -> dict[str, Any]:
    """``restore_vs_download`` from ``bench/_restore_bench.py``, when it is there."""
    if not (_BENCH / "_restore_bench.py").is_file():
        print(
            "note: bench/_restore_bench.py is not in this tree; restore_vs_download is left out",
            file=sys.stderr,
        )
        return {"restore_vs_download": None}
    sys.path.insert(0, str(_BENCH))
    from _restore_bench import restore_vs_download  # type: ignore[import-not-found]

    return dict(restore_vs_download(clips=clips, segments_per_clip=segments, rounds=rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--segments", type=int, default=60, help="1 MiB segments per upload run")
    parser.add_argument(
        "--live-segments", type=int, default=20, help="segments of the live CPU measurement"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement")
    parser.add_argument("--lag-seconds", type=float, default=60.0, help="seconds of recording")
    parser.add_argument(
        "--video-seconds", type=float, default=10.0, help="length of the looped 1080p file"
    )
    parser.add_argument("--restore-clips", type=int, default=8, help="clips in the restore run")
    parser.add_argument(
        "--restore-segments", type=int, default=8, help="1 MiB segments per restored clip"
    )
    args = parser.parse_args()
    for name in ("segments", "live_segments", "rounds", "restore_clips", "restore_segments"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lag_seconds < 4 or args.video_seconds < 2:
        parser.error("--lag-seconds must be at least 4 and --video-seconds at least 2")

    result: dict[str, Any] = {}
    result.update(upload_figures(args.segments, args.rounds, args.live_segments))
    result.update(lag_figures(args.lag_seconds, args.video_seconds))
    result.update(restore_figures(args.restore_clips, args.restore_segments, args.rounds))
    if not args.json:
        print(f"uploader vs bare PUT loop   {result['upload_vs_raw_put']}  (goal >= 0.9)")
        print(
            f"  {result['upload_MBps']} MB/s vs {result['raw_put_MBps']} MB/s "
            f"({result['upload_segments']} segments, {result['upload_clips']} clips)"
        )
        print(f"uploader CPU share at 4 Mb/s {result['uploader_cpu_share']}  (goal <= 0.02)")
        print(
            f"  bare PUT loop: {result['raw_put_cpu_share']}; while recording (a manifest per "
            f"segment): {result['uploader_cpu_share_live']}"
        )
        print(
            f"backup lag while recording 1080p: p50 {result['backup_lag_p50_s']} s, "
            f"p95 {result['backup_lag_p95_s']} s  (goal <= 3)"
        )
        print(
            f"  {result['lag_segments']} segments, {result['lag_segments_not_uploaded']} not "
            f"uploaded, {result['lag_frames_dropped']} frames dropped, "
            f"{result['lag_frames_behind']} behind"
        )
        print(f"restore vs download          {result['restore_vs_download']}  (goal >= 0.8)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
