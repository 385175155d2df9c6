"""Encoded video for live viewers, made once per camera and codec however many watch.

Each camera has one :class:`PacketFeed` per codec WebRTC peers take: H.264 and VP8. A camera that
delivers H.264 (``Frame.packet``) is passed through untouched to H.264 viewers. Otherwise one
encoder per camera and codec (libx264 or libvpx) serves every viewer of that codec, on its own
worker thread: while it is busy, newer frames are skipped rather than queued, so encoding never
holds up the event loop or the recording pipeline. It runs only while someone watches.

Each viewer keeps a short queue of packets. A viewer that falls behind loses its queue and waits
for the next keyframe (a picture it can decode), and asks the shared encoder for one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, cast

import av
import numpy as np

from hardware import Frame
from hardware.annexb import has_sps, parameter_sets

__all__ = ["CODECS", "LivePacket", "PacketFeed", "PacketViewer", "frame_to_av"]

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 6184 §5.1, RFC 7741 §4.1)
MAX_QUEUED_PACKETS = 30  # 1 s at 30 fps, 2 s at 15; past this a viewer has stalled
KEYFRAME_INTERVAL_S = 1.0  # a joining viewer waits at most this long for a picture
X264_PRESET = "ultrafast"  # live H.264: the fastest encode (see _x264)


@dataclass(frozen=True, slots=True)
class LivePacket:
    """One encoded picture (an H.264 access unit in Annex B, or a VP8 frame), or one Opus frame,
    stamped on its RTP clock."""

    data: bytes = field(repr=False)
    pts: int
    keyframe: bool


class _Source(Protocol):
    """What a viewer needs of its feed."""

    def request_keyframe(self) -> None: ...

    def remove(self, viewer: PacketViewer) -> None: ...


class PacketViewer:
    """One viewer of a feed: a short queue of packets that starts at a keyframe."""

    def __init__(self, feed: _Source, *, max_queued: int = MAX_QUEUED_PACKETS) -> None:
        self._feed = feed
        self._max_queued = max_queued
        self._queue: collections.deque[LivePacket] = collections.deque()
        self._ready = asyncio.Event()
        self._need_keyframe = True
        self.skipped = 0  # packets dropped because this viewer fell behind or joined mid-GOP
        self.closed = False

    def offer(self, packet: LivePacket) -> None:
        """Queue one packet (on the event loop; never blocks)."""
        if self._need_keyframe and not packet.keyframe:
            self.skipped += 1
            return
        if len(self._queue) >= self._max_queued:
            self.skipped += len(self._queue) + 1
            self._queue.clear()
            self._need_keyframe = True
            self._feed.request_keyframe()
            return
        self._need_keyframe = False
        self._queue.append(packet)
        self._ready.set()

    async def next(self) -> LivePacket | None:
        """The next packet; None once the viewer is closed."""
        while not self._queue and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        return self._queue.popleft()

    def close(self) -> None:
        """End this viewer (:meth:`next` returns None) and leave its feed; idempotent."""
        if not self.closed:
            self.closed = True
            self._ready.set()
            self._feed.remove(self)


class PacketFeed:
    """One camera's video in one codec (``"h264"`` or ``"vp8"``) for every viewer of that codec:
    H.264 passthrough, or a single shared encode."""

    def __init__(self, camera: str, codec: str, *, extradata: bytes | None = None) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        self.camera = camera
        self.codec = codec
        self.encoded_frames = 0
        self.passed_through = 0
        self.skipped_frames = 0  # raw frames not encoded because the encoder was busy
        self._extradata = parameter_sets(extradata) if codec == "h264" else b""
        self._viewers: list[PacketViewer] = []
        self._pool: ThreadPoolExecutor | None = None
        self._encoder: _Encoder | None = None
        self._busy = False
        self._force_keyframe = False
        self._camera_h264 = False  # the last frame came with the camera's own H.264

    @property
    def viewer_count(self) -> int:
        """How many viewers this feed has now."""
        return len(self._viewers)

    @property
    def encoding(self) -> str:
        """How this feed's viewers are served, for ``live.started``: ``passthrough_h264`` while
        the camera's own H.264 goes out as it is, else ``shared_<codec>`` (one encode for all)."""
        if self.codec == "h264" and self._camera_h264:
            return "passthrough_h264"
        return f"shared_{self.codec}"

    def subscribe(self) -> PacketViewer:
        """A new viewer, which starts at the next keyframe (one is requested for it); call on the
        event loop."""
        viewer = PacketViewer(self)
        self._viewers.append(viewer)
        self.request_keyframe()
        return viewer

    def remove(self, viewer: PacketViewer) -> None:
        """Forget a viewer; the last one to go shuts the encoder down."""
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        if not self._viewers and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool, self._encoder = None, None

    def request_keyframe(self) -> None:
        """Make the next shared encode a keyframe; H.264 passed through waits for the camera's own
        next keyframe instead."""
        self._force_keyframe = True

    def push(self, frame: Frame) -> None:
        """Hand one captured frame to the feed (on the event loop; never waits)."""
        self._camera_h264 = frame.packet is not None
        if not self._viewers:
            return
        pts = round(frame.pts_s / TIME_BASE)
        if frame.packet is not None and self.codec == "h264":
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
            self._pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"live-{self.codec}-{self.camera}"
            )
            self._encoder = _Encoder(self.codec, frame.width, frame.height)
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
            logger.error(
                "live.encode_failed camera=%s codec=%s error=%s", self.camera, self.codec, error
            )
            return
        self.encoded_frames += 1
        self._distribute(future.result())

    def _distribute(self, packets: list[LivePacket]) -> None:
        for packet in packets:
            for viewer in list(self._viewers):
                viewer.offer(packet)


def _x264(ctx: Any) -> None:
    """Constrained baseline (what every WebRTC peer decodes), no B-frames, zero latency, SPS/PPS
    before each keyframe so a joining viewer can start there. The ultrafast preset: a viewer
    waits for every picture's encode, which at 1280x720 takes about half of veryfast's time
    (4 ms against 7 ms a frame on a 2-core x86 box, more on a busy one), and the camera's
    recording encode runs at the same moment on the same few cores."""
    ctx.options = {
        "preset": X264_PRESET,
        "tune": "zerolatency",  # no look-ahead, no frame threads: a picture out per picture in
        "profile": "baseline",
        "forced-idr": "1",  # a forced keyframe must be an IDR picture a new viewer can start at
        "x264-params": "bframes=0:repeat-headers=1:scenecut=0:keyint=infinite:rc-lookahead=0",
    }


def _vpx(ctx: Any) -> None:
    """libvpx VP8 for a LAN viewer, tuned for latency over compression."""
    # About aiortc's own starting rate: enough for a face at 640x360 and 15 fps. Every byte is
    # packetized and encrypted in Python per viewer, so a higher rate costs each viewer more.
    ctx.bit_rate = 600_000
    ctx.gop_size = 1 << 30  # keyframes only when we ask (on join, on a stall, every second)
    ctx.qmin, ctx.qmax = 4, 56
    ctx.thread_count = 1  # the feed already has its own thread; the device has few cores
    ctx.options = {
        "deadline": "realtime",  # the realtime speed path: a frame in well under its 66 ms
        "cpu-used": "8",  # a fast realtime speed (of 0-16): about 5 ms a 640x360 frame here
        "lag-in-frames": "0",  # no look-ahead: every frame comes out as it goes in
        "auto-alt-ref": "0",  # alt-ref frames need look-ahead
        "error-resilient": "1",  # a lost packet spoils less of the following frames
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "bufsize": "600000",  # one second of buffer: a burst of motion does not stall frames
    }


def frame_to_av(frame: Frame) -> av.VideoFrame:
    """A yuv420p ``av.VideoFrame`` of our frame (not yet stamped): each plane copied straight
    into the picture's own buffer when their rows are as wide (one copy, about a tenth of a
    millisecond at 720p), else through one stacked array."""
    h, w = frame.y.shape
    picture = av.VideoFrame(w, h, "yuv420p")
    planes = (frame.y, frame.u, frame.v)
    if all(p.line_size == a.shape[1] for p, a in zip(picture.planes, planes, strict=True)):
        for plane, array in zip(picture.planes, planes, strict=True):
            plane.update(np.ascontiguousarray(array))  # type: ignore[arg-type]  # any buffer
        return picture
    stacked = np.concatenate([a.reshape(-1) for a in planes])
    return av.VideoFrame.from_ndarray(stacked.reshape(h * 3 // 2, w), format="yuv420p")


CODECS: dict[str, tuple[str, Callable[[Any], None]]] = {
    "h264": ("libx264", _x264),
    "vp8": ("libvpx", _vpx),
}


class _Encoder:
    """One camera's encoder for one codec; keyframes on request and at least every second."""

    def __init__(self, codec: str, width: int, height: int) -> None:
        name, configure = CODECS[codec]
        ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        configure(ctx)
        ctx.open()
        self._ctx = ctx
        self._last_keyframe_pts: int | None = None
        self._last_pts = -1

    def encode(self, frame: Frame, pts: int, force_keyframe: bool) -> list[LivePacket]:
        """Encode one picture (on the feed's worker thread)."""
        picture = frame_to_av(frame)
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
