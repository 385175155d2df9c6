"""TwoStreamCamera: a camera's main stream recorded, its small substream watched for motion.

Network cameras offer a main stream (1080p and up) and a substream (640x360 or so). Decoding the
main stream only to look for motion is most of what a camera costs the box; the substream costs
about a ninth of it. This source pairs them: one :class:`Frame` per main-stream packet (which the
pipeline remuxes, never decodes), carrying the substream's latest picture as its planes.

Pairing is by time. In virtual time (a simulator that is not real-time) both streams count from
the same start, so a packet at ``t`` gets the last detect picture at or before ``t``; in real time
a packet gets the last picture that has arrived. Either way a trigger seen on the substream acts
on the next main-stream packet, so pre-roll and clip boundaries fall on main-stream keyframes.

When the detect stream delivers nothing for ``detect_timeout_s`` (it stopped, or never came up),
the camera decodes the main stream instead, from its next keyframe on, scaled to the detect size:
motion goes on, recording never stopped. :attr:`detect_lost` says why (None while the substream
works); it is None again once the substream delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np

from hardware._clock import Clock, SystemClock
from hardware._demux import plane_view
from hardware._frames import CameraSource, EncodedPacket, Frame, Plane, StreamInfo
from hardware._packets import RecordStream
from hardware._worker import Worker
from hardware.annexb import has_sps
from hardware.errors import HardwareError

__all__ = ["DETECT_TIMEOUT_S", "SizeChanges", "TwoStreamCamera", "fit_plane"]

logger = logging.getLogger(__name__)

DETECT_TIMEOUT_S = 2.0  # no detect picture this long: motion decodes the main stream instead
_CONNECT_TIMEOUT_S = 10.0  # a detect stream that has not answered by then starts as lost
_ARRIVED = 16  # detect pictures held between two record packets, at most (real time)

_Picture = tuple[Plane, Plane, Plane]


class TwoStreamCamera:
    """A camera with a ``record`` stream (H.264 packets) and a ``detect`` stream (pictures).

    Implements CameraSource: ``info`` is the record stream's (its size, rate and parameter sets),
    :attr:`detect_info` the size of the pictures the frames carry.
    """

    def __init__(
        self,
        record: RecordStream,
        detect: CameraSource,
        *,
        name: str | None = None,
        realtime: bool = True,
        detect_timeout_s: float = DETECT_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        if detect_timeout_s <= 0:
            raise ValueError(f"detect_timeout_s must be positive, got {detect_timeout_s}")
        self.name = name or record.name
        self.realtime = realtime
        self.detect_timeout_s = detect_timeout_s
        self.record = record
        self.detect = detect
        self._clock = clock or SystemClock()
        self._detect_info: StreamInfo | None = None
        self.detect_lost: str | None = None
        self.fallback_pictures = 0  # pictures decoded from the main stream (detect stream lost)
        self.resized_pictures = 0  # detect pictures of another size, scaled to detect_info's
        self._picture: _Picture | None = None
        self._last_s: float | None = None  # when the last detect picture came (see _lost_for)
        self._ahead: Frame | None = None  # virtual time: the next detect picture, not yet due
        self._arrived: deque[Frame] = deque(maxlen=_ARRIVED)
        self._detect_ended = False
        self._sizes = SizeChanges()
        self._decoder: _MainDecoder | None = None
        self._worker: Worker | None = None
        self._closed = False

    @property
    def info(self) -> StreamInfo:
        """The record stream: what the clips hold."""
        return self.record.info

    @property
    def detect_info(self) -> StreamInfo:
        """The size and rate of the pictures the frames carry (the detect stream's)."""
        if self._detect_info is None:
            self._detect_info = self.detect.info
        return self._detect_info

    @property
    def button(self) -> Any:
        return getattr(self.record, "button", None)

    @property
    def microphone(self) -> Any:
        return getattr(self.record, "microphone", None)

    @property
    def motion_masks(self) -> Any:
        return getattr(self.detect, "motion_masks", ())

    @property
    def motion_sensitivity(self) -> float | None:
        return getattr(self.detect, "motion_sensitivity", None)

    @property
    def reconnecting(self) -> bool:
        return getattr(self.record, "reconnecting", False) is True

    async def connect(self) -> StreamInfo:
        """Open the record stream (retrying); give the detect stream a while, else start lost."""
        connect = getattr(self.record, "connect", None)
        if connect is not None:
            await connect()
        detect_connect = getattr(self.detect, "connect", None)
        if detect_connect is not None and self._detect_info is None:
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                    self._detect_info = await detect_connect()
            except TimeoutError:
                info = self.record.info
                width = 640
                height = max(2, round(width * info.height / info.width / 2) * 2)
                self._detect_info = StreamInfo(width, height, info.fps)
                self._set_lost("the detect stream did not answer; motion decodes the main stream")
        return self.info

    async def frames(self) -> AsyncIterator[Frame]:
        """One frame per record packet, until the record stream ends."""
        detect_frames = self.detect.frames()
        reader = asyncio.create_task(self._read_detect(detect_frames)) if self.realtime else None
        start_s = self._clock.monotonic()
        try:
            async for item in self.record.packets():
                if self.realtime:
                    now_s = self._clock.monotonic() - start_s
                    latest = self._arrived.pop() if self._arrived else None
                    self._arrived.clear()
                else:
                    now_s = item.pts_s
                    latest = await self._due(detect_frames, item.pts_s)
                if latest is not None:
                    self._picture = self._fit(latest)
                    self._last_s = now_s if self.realtime else latest.pts_s
                    if self.detect_lost is not None:
                        self._restored()
                elif self._lost_for(now_s) > self.detect_timeout_s and self.detect_lost is None:
                    self._set_lost(
                        f"no picture from the detect stream for {self.detect_timeout_s:g} s; "
                        "motion decodes the main stream until it is back"
                    )
                picture, new = self._picture, latest is not None
                if self.detect_lost is not None:
                    decoded = await self._decode_main(item.packet)
                    if decoded is not None:
                        self._picture, picture, new = decoded, decoded, True
                if picture is None:
                    picture, new = self._black(), False
                y, u, v = picture
                yield Frame(
                    item.index, item.pts_s, item.wall_s, y, u, v, item.truth, item.packet, new
                )
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            with contextlib.suppress(RuntimeError):
                await detect_frames.aclose()  # type: ignore[attr-defined]
            if self._worker is not None:
                self._worker.shutdown()
                self._worker = None

    async def close(self) -> None:
        """Close both streams. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.record.close()
        finally:
            await self.detect.close()

    # -- detect pictures -----------------------------------------------------------------------

    async def _read_detect(self, frames: AsyncIterator[Frame]) -> None:
        """Real time: keep the detect pictures as they arrive (the record side takes the last)."""
        try:
            async for frame in frames:
                self._arrived.append(frame)
        except HardwareError as exc:
            logger.warning("camera.detect_failed camera=%s reason=%s", self.name, exc)
        self._detect_ended = True

    async def _due(self, frames: AsyncIterator[Frame], t_s: float) -> Frame | None:
        """Virtual time: the last detect picture at or before ``t_s`` not yet taken, if any."""
        slack_s = 0.5 / float(self.info.fps)
        latest = None
        while True:
            if self._ahead is None:
                if self._detect_ended:
                    return latest
                try:
                    self._ahead = await anext(frames)
                except StopAsyncIteration:
                    self._detect_ended = True
                    return latest
                except HardwareError as exc:
                    logger.warning("camera.detect_failed camera=%s reason=%s", self.name, exc)
                    self._detect_ended = True
                    return latest
            if self._ahead.pts_s > t_s + slack_s:
                return latest
            latest, self._ahead = self._ahead, None

    def _lost_for(self, now_s: float) -> float:
        return now_s - (self._last_s if self._last_s is not None else 0.0)

    def _fit(self, frame: Frame) -> _Picture:
        """The picture at the detect size: a stream whose size changed is scaled back to it."""
        info = self.detect_info
        if (frame.width, frame.height) == (info.width, info.height):
            return frame.y, frame.u, frame.v
        if self._sizes.is_new(frame):  # a stream that keeps changing is logged a while
            logger.warning(
                "camera.detect_size_changed camera=%s size=%dx%d scaled_to=%dx%d",
                self.name,
                frame.width,
                frame.height,
                info.width,
                info.height,
            )
        self.resized_pictures += 1
        return self._sizes.fit(frame, info.width, info.height)

    def _black(self) -> _Picture:
        info = self.detect_info
        w, h = info.width, info.height
        return (
            np.zeros((h, w), np.uint8),
            np.full((h // 2, w // 2), 128, np.uint8),
            np.full((h // 2, w // 2), 128, np.uint8),
        )

    # -- the fallback: motion on the main stream -------------------------------------------------

    def _set_lost(self, reason: str) -> None:
        self.detect_lost = reason
        logger.warning("camera.detect_lost camera=%s reason=%s", self.name, reason)

    def _restored(self) -> None:
        self.detect_lost = None
        self._decoder = None  # the next loss starts a fresh decode at a keyframe
        logger.info("camera.detect_restored camera=%s", self.name)

    async def _decode_main(self, packet: EncodedPacket) -> _Picture | None:
        """The main stream's picture for ``packet`` at the detect size (None before a keyframe)."""
        if self._decoder is None:
            if not packet.keyframe:
                return None
            info = self.detect_info
            self._decoder = _MainDecoder(self.info.extradata or b"", info.width, info.height)
        if self._worker is None:
            self._worker = Worker(f"{self.name}-fallback")
        picture = await self._worker.run(self._decoder.decode, packet)
        if picture is not None:
            self.fallback_pictures += 1
        return picture


class _MainDecoder:
    """Decodes the main stream for motion, scaled down to the detect size (worker thread)."""

    def __init__(self, parameter_sets: bytes, width: int, height: int) -> None:
        self._ctx = av.CodecContext.create("h264", "r")
        self._ctx.thread_type = "SLICE"  # a picture out for every packet in, none held back
        self._parameter_sets = parameter_sets
        self._width, self._height = width, height

    def decode(self, packet: EncodedPacket) -> _Picture | None:
        data = packet.data
        if packet.keyframe and self._parameter_sets and not has_sps(data):
            data = self._parameter_sets + data
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            logger.debug("camera.fallback_decode_error reason=%s", exc)
            return None
        if not frames:
            return None
        frame = frames[-1].reformat(width=self._width, height=self._height, format="yuv420p")
        w, h = self._width, self._height
        return (
            plane_view(frame.planes[0], w, h),
            plane_view(frame.planes[1], w // 2, h // 2),
            plane_view(frame.planes[2], w // 2, h // 2),
        )


class SizeChanges:
    """A stream's pictures of another size than it began with: scaled back to that size, and
    each new size reported once (at most ``max_logged`` of them, for a stream that keeps
    changing)."""

    def __init__(self, max_logged: int = 16) -> None:
        self._seen: set[tuple[int, int]] = set()
        self._max_logged = max_logged

    def is_new(self, frame: Frame) -> bool:
        """Whether ``frame``'s size is one to report (not seen before, within the cap)."""
        size = (frame.width, frame.height)
        if size in self._seen or len(self._seen) >= self._max_logged:
            return False
        self._seen.add(size)
        return True

    @staticmethod
    def fit(frame: Frame, width: int, height: int) -> tuple[Plane, Plane, Plane]:
        """``frame``'s planes scaled to ``width`` x ``height`` (4:2:0)."""
        return (
            fit_plane(frame.y, width, height),
            fit_plane(frame.u, width // 2, height // 2),
            fit_plane(frame.v, width // 2, height // 2),
        )


def fit_plane(plane: Plane, width: int, height: int) -> Plane:
    """``plane`` scaled to ``height`` x ``width`` by nearest neighbour (for motion: cheap, exact
    enough)."""
    h, w = plane.shape
    if (w, h) == (width, height):
        return plane
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return np.ascontiguousarray(plane[rows][:, cols])
