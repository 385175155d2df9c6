"""Clip writer: packets → ~2 s MPEG-TS segments cut at keyframes → age encryption → the clip store.

Each segment has its own muxer, so it starts with PAT/PMT and (the keyframe carries them in-band)
SPS/PPS: every segment decodes on its own. The muxer writes straight into the age encryptor, which
writes ciphertext into the store's temp file; no plaintext byte reaches a file.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Protocol, cast

import av
import av.error

from crypto import age
from crypto.errors import AgeError
from device._files import SegmentSink
from device._preroll import TimedPacket
from device.errors import ClipRefused, StoreError
from device.events import ClipFinished, ClipStarted, DeviceEvent, SegmentWritten
from device.store import ClipRecord, SegmentRecord

__all__ = ["ClipSink", "ClipWriter", "VideoFormat"]

logger = logging.getLogger(__name__)

_CUT_TOLERANCE = 0.95  # cut at a keyframe once a segment holds this share of segment_s
# A source that stops sending keyframes still gets cut here: the packets kept for a retry stay
# bounded (the next segment then starts mid-GOP and only decodes after its predecessor).
_FORCED_CUT_FACTOR = 4


class ClipSink(Protocol):
    """Where a camera's clips go: the writing half of :class:`~device.store.ClipStore` (which
    implements it), or a wrapper of one (the harness's faulty disk)."""

    def open_clip(self, camera: str, start_s: float) -> str: ...

    def open_segment(self, clip_id: str, index: int) -> SegmentSink: ...

    def commit_segment(
        self,
        clip_id: str,
        index: int,
        file: SegmentSink,
        *,
        start_s: float,
        duration_s: float,
        payload_sha256: bytes,
    ) -> SegmentRecord: ...

    def finish_clip(self, clip_id: str, end_s: float) -> ClipRecord: ...

    def evict_oldest(self, *, exclude: str | None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class VideoFormat:
    width: int
    height: int
    fps: Fraction


class _MuxSink:
    """The file object PyAV's muxer writes to: forwards every byte into the age encryptor."""

    def __init__(self, encryptor: age.Encryptor) -> None:
        self._encryptor = encryptor

    def write(self, data: bytes) -> int:
        self._encryptor.write(data)
        return len(data)


class _SegmentWriter:
    """One segment being muxed and encrypted into a temp file."""

    def __init__(
        self, file: SegmentSink, recipients: Sequence[age.Recipient], video: VideoFormat
    ) -> None:
        self.file = file
        self._container: av.container.OutputContainer | None = None
        self._encryptor = age.Encryptor(cast(BinaryIO, file), recipients)
        # A sink without seek() would otherwise be flushed after every packet: one trip through
        # Python and the encryptor per frame instead of one per buffer (the bytes are the same).
        self._container = av.open(
            _MuxSink(self._encryptor), "w", format="mpegts", options={"flush_packets": "0"}
        )
        self._stream = self._container.add_mux_stream(
            "h264", rate=video.fps, width=video.width, height=video.height
        )

    def mux(self, packet: TimedPacket) -> None:
        assert self._container is not None
        out = av.Packet(packet.data)
        out.pts = packet.pts
        out.dts = packet.dts
        out.time_base = packet.time_base
        out.is_keyframe = packet.keyframe
        out.stream = self._stream
        self._container.mux(out)

    def close(self) -> bytes:
        """Flush the muxer and the encryptor; the payload SHA-256."""
        assert self._container is not None
        container, self._container = self._container, None
        container.close()
        self._encryptor.close()
        return bytes(self._encryptor.payload_sha256)

    def abort(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (OSError, av.error.FFmpegError) as exc:
                # The write that failed already broke this muxer; the temp file goes anyway.
                logger.debug("segment.abort_close error=%s", exc)
        self.file.abort()


class ClipWriter:
    """Writes one clip: opened with the pre-roll packets, fed packet by packet, then finished.

    A write that fails with ENOSPC evicts the oldest unheld clip and replays the segment once;
    when that fails too (or nothing can be evicted, or another I/O error) it raises ClipRefused.
    Methods return the events to report. Runs in the camera's worker thread.
    """

    def __init__(
        self,
        store: ClipSink,
        camera: str,
        video: VideoFormat,
        recipients: Callable[[], Sequence[age.Recipient]],
        *,
        segment_s: float,
    ) -> None:
        self._store = store
        self._camera = camera
        self._video = video
        self._recipients = recipients
        self._segment_s = segment_s
        self._frame_s = float(1 / video.fps)
        self.clip_id: str | None = None
        self._index = 0
        self._writer: _SegmentWriter | None = None
        self._packets: list[TimedPacket] = []
        self._retried = False
        self._last: TimedPacket | None = None
        self.segments = 0
        self.bytes_written = 0
        self.rejected_packets = 0

    def start(self, packets: Sequence[TimedPacket]) -> list[DeviceEvent]:
        """Open the clip at the first packet (a keyframe) and write ``packets``."""
        if not packets:
            raise ClipRefused(f"camera {self._camera}: no keyframe yet, cannot start a clip")
        try:
            self.clip_id = self._store.open_clip(self._camera, packets[0].wall_s)
        except (OSError, sqlite3.Error, StoreError) as exc:
            raise ClipRefused(f"camera {self._camera}: cannot open a clip: {exc}") from exc
        events: list[DeviceEvent] = [ClipStarted(self._camera, self.clip_id, packets[0].wall_s)]
        for packet in packets:
            events += self.add(packet)
        return events

    def add(self, packet: TimedPacket) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        if self._packets:
            held_s = packet.pts_s - self._packets[0].pts_s
            if (packet.keyframe and held_s >= self._segment_s * _CUT_TOLERANCE) or (
                held_s >= self._segment_s * _FORCED_CUT_FACTOR
            ):
                if not packet.keyframe:
                    logger.warning("segment.forced_cut camera=%s held_s=%.1f", self._camera, held_s)
                events.append(self._close_segment(next_start=packet))
        self._packets.append(packet)
        self._last = packet
        if self._writer is None:
            self._replay_or_refuse(None)
        else:
            try:
                self._writer.mux(packet)
            except OSError as exc:
                self._replay_or_refuse(exc)
            except av.error.FFmpegError as exc:
                # A packet the muxer rejects (a camera's corrupt data) is dropped, not fatal.
                self._packets.pop()
                self.rejected_packets += 1
                logger.debug("segment.packet_rejected camera=%s error=%s", self._camera, exc)
        return events

    def finish(self) -> list[DeviceEvent]:
        """Close the last segment and the clip."""
        assert self.clip_id is not None
        events: list[DeviceEvent] = []
        if self._packets and self._writer is not None:
            events.append(self._close_segment(next_start=None))
        return events + self.close_clip()

    def close_clip(self) -> list[DeviceEvent]:
        """Close the clip with the segments already written (also after a refusal)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self.clip_id is None:
            return []
        end_s = self._last.wall_s + self._frame_s if self._last is not None else 0.0
        try:
            record = self._store.finish_clip(self.clip_id, end_s)
        except (OSError, sqlite3.Error) as exc:
            raise ClipRefused(f"camera {self._camera}: cannot close clip {self.clip_id}") from exc
        return [ClipFinished(self._camera, self.clip_id, end_s, record.segment_count)]

    # -- internals ---------------------------------------------------------------------------

    def _open_writer(self) -> _SegmentWriter:
        assert self.clip_id is not None
        recipients = list(self._recipients())
        if not recipients:
            raise ClipRefused(
                f"camera {self._camera}: no owner recipients to encrypt to; pair an owner's phone"
            )
        file = self._store.open_segment(self.clip_id, self._index)
        try:
            return _SegmentWriter(file, recipients, self._video)
        except AgeError as exc:
            file.abort()
            raise ClipRefused(
                f"camera {self._camera}: cannot encrypt to the owners: {exc}"
            ) from exc
        except BaseException:
            file.abort()
            raise

    def _replay_or_refuse(self, failure: OSError | None) -> None:
        """(Re)build the segment writer and mux every packet of the segment so far."""
        if failure is not None:
            self._handle_failure(failure)
        while True:
            try:
                self._writer = self._open_writer()
                for packet in self._packets:
                    self._writer.mux(packet)
                return
            except OSError as exc:
                self._handle_failure(exc)

    def _handle_failure(self, exc: OSError) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if exc.errno != errno.ENOSPC or self._retried:
            raise ClipRefused(f"camera {self._camera}: cannot write segment: {exc}") from exc
        self._retried = True
        evicted = self._store.evict_oldest(exclude=self.clip_id)
        if evicted is None:
            raise ClipRefused(
                f"camera {self._camera}: disk full and no unheld clip left to evict"
            ) from exc
        logger.warning("segment.disk_full camera=%s evicted=%s", self._camera, evicted)

    def _close_segment(self, next_start: TimedPacket | None) -> SegmentWritten:
        assert self.clip_id is not None
        first, last = self._packets[0], self._packets[-1]
        if next_start is not None:
            duration_s = next_start.pts_s - first.pts_s
        else:
            duration_s = last.pts_s - first.pts_s + self._frame_s
        while True:
            assert self._writer is not None
            try:
                sha256 = self._writer.close()
                record = self._store.commit_segment(
                    self.clip_id,
                    self._index,
                    self._writer.file,
                    start_s=first.wall_s,
                    duration_s=duration_s,
                    payload_sha256=sha256,
                )
                break
            except OSError as exc:
                self._replay_or_refuse(exc)
            except sqlite3.Error as exc:
                self._writer.abort()
                raise ClipRefused(f"camera {self._camera}: cannot record segment: {exc}") from exc
        self._writer = None
        self._packets = []
        self._retried = False
        self._index += 1
        self.segments += 1
        self.bytes_written += record.size
        logger.debug(
            "segment.written camera=%s clip_id=%s index=%d size=%d",
            self._camera,
            self.clip_id,
            record.index,
            record.size,
        )
        return SegmentWritten(self._camera, self.clip_id, record.index, record.size)
