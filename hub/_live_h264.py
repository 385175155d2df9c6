"""H.264 for live viewers, made once per camera however many watch.

A camera that delivers H.264 (``Frame.packet``) is passed through untouched. A raw camera is
encoded by one libx264 instance per camera, shared by every H.264 viewer, on its own worker
thread: while it is busy, newer frames are skipped rather than queued, so encoding never holds up
the event loop or the recording pipeline. It runs only while someone watches.

Each viewer keeps a short queue of access units. A viewer that falls behind loses its queue and
waits for the next keyframe (a picture it can decode), and asks the shared encoder for one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from hardware._frames import Frame
from hardware.annexb import has_sps, parameter_sets

__all__ = ["H264Feed", "LivePacket", "PacketViewer"]

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 6184 §5.1)
MAX_QUEUED_PACKETS = 30  # about 2 s at 15 fps; past this a viewer has stalled
KEYFRAME_INTERVAL_S = 1.0  # a joining viewer waits at most this long for a picture


@dataclass(frozen=True, slots=True)
class LivePacket:
    """One H.264 access unit (Annex B) stamped on the 90 kHz clock."""

    data: bytes = field(repr=False)
    pts: int
    keyframe: bool


class PacketViewer:
    """One H.264 viewer of a camera: a short queue of access units that starts at a keyframe."""

    def __init__(self, feed: H264Feed) -> None:
        self._feed = feed
        self._queue: collections.deque[LivePacket] = collections.deque()
        self._ready = asyncio.Event()
        self._need_keyframe = True
        self.skipped = 0  # access units dropped because this viewer fell behind or joined mid-GOP
        self.closed = False

    def offer(self, packet: LivePacket) -> None:
        """Queue one access unit (on the event loop; never blocks)."""
        if self._need_keyframe and not packet.keyframe:
            self.skipped += 1
            return
        if len(self._queue) >= MAX_QUEUED_PACKETS:
            self.skipped += len(self._queue) + 1
            self._queue.clear()
            self._need_keyframe = True
            self._feed.request_keyframe()
            return
        self._need_keyframe = False
        self._queue.append(packet)
        self._ready.set()

    async def next(self) -> LivePacket | None:
        """The next access unit; None once the viewer is closed."""
        while not self._queue and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        return self._queue.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ready.set()
            self._feed.remove(self)


class H264Feed:
    """One camera's H.264 for every H.264 viewer: passthrough, or a single shared encode."""

    def __init__(self, camera: str, *, extradata: bytes | None = None) -> None:
        self.camera = camera
        self.encoded_frames = 0
        self.passed_through = 0
        self.skipped_frames = 0  # raw frames not encoded because the encoder was busy
        self._extradata = parameter_sets(extradata)
        self._viewers: list[PacketViewer] = []
        self._pool: ThreadPoolExecutor | None = None
        self._encoder: _Encoder | None = None
        self._busy = False
        self._force_keyframe = False

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    def subscribe(self) -> PacketViewer:
        viewer = PacketViewer(self)
        self._viewers.append(viewer)
        self.request_keyframe()
        return viewer

    def remove(self, viewer: PacketViewer) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        if not self._viewers and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool, self._encoder = None, None

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def push(self, frame: Frame) -> None:
        """Hand one captured frame to the feed (on the event loop; never waits)."""
        if not self._viewers:
            return
        pts = round(frame.pts_s / TIME_BASE)
        if frame.packet is not None:
            self.passed_through += 1
            data = frame.packet.data
            if frame.packet.keyframe and self._extradata and not has_sps(data):
                data = self._extradata + data
            self._distribute([LivePacket(data, pts, frame.packet.keyframe)])
            return
        if self._busy:
            self.skipped_frames += 1
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"live-{self.camera}")
            self._encoder = _Encoder(frame.width, frame.height)
        encoder = self._encoder
        assert encoder is not None
        force, self._force_keyframe = self._force_keyframe, False
        self._busy = True
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, encoder.encode, frame, pts, force
        )
        future.add_done_callback(self._encoded)

    def _encoded(self, future: asyncio.Future[list[LivePacket]]) -> None:
        self._busy = False
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            logger.error("live.encode_failed camera=%s error=%s", self.camera, error)
            return
        self.encoded_frames += 1
        self._distribute(future.result())

    def _distribute(self, packets: list[LivePacket]) -> None:
        for packet in packets:
            for viewer in list(self._viewers):
                viewer.offer(packet)


class _Encoder:
    """libx264 for live view: constrained baseline (what every WebRTC peer decodes), no
    B-frames, zero latency, SPS/PPS before each keyframe so a joining viewer can start there."""

    def __init__(self, width: int, height: int) -> None:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",  # a forced keyframe must be an IDR picture a new viewer can start at
            "x264-params": "bframes=0:repeat-headers=1:scenecut=0:keyint=infinite",
        }
        ctx.open()
        self._ctx = ctx
        self._last_keyframe_pts: int | None = None
        self._last_pts = -1

    def encode(self, frame: Frame, pts: int, force_keyframe: bool) -> list[LivePacket]:
        """Encode one picture (on the feed's worker thread)."""
        h, w = frame.y.shape
        planes = np.concatenate((frame.y.reshape(-1), frame.u.reshape(-1), frame.v.reshape(-1)))
        picture = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        due = (
            self._last_keyframe_pts is None
            or (pts - self._last_keyframe_pts) * TIME_BASE >= KEYFRAME_INTERVAL_S
        )
        if force_keyframe or due:
            picture.pict_type = av.video.frame.PictureType.I
            self._last_keyframe_pts = pts
        picture.pts = pts
        picture.time_base = TIME_BASE
        return [
            LivePacket(bytes(p), p.pts if p.pts is not None else pts, bool(p.is_keyframe))
            for p in self._ctx.encode(picture)
        ]
