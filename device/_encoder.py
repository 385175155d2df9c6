"""The one libx264 encode of a raw camera: yuv420p planes in, Annex B H.264 access units out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from device._config import RecorderConfig
from device._preroll import TimedPacket

__all__ = ["TIME_BASE", "H264Encoder"]

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)  # MPEG-TS clock (ISO/IEC 13818-1 §2.4.3.6)
_HARDWARE_KBPS = 4000  # a hardware encoder's bitrate when none is configured (1080p-ish)

Plane = npt.NDArray[np.uint8]


class H264Encoder:
    """Encodes frames once, low latency: no B-frames, zerolatency tune, a keyframe every ~2 s.

    Without B-frames and lookahead every frame yields its packet immediately, so the pre-roll
    buffer is never behind the picture that triggered a clip. SPS/PPS are repeated in-band before
    every keyframe (no global header), which keeps each MPEG-TS segment decodable on its own.
    """

    def __init__(self, width: int, height: int, fps: Fraction, config: RecorderConfig) -> None:
        ctx = None
        if config.encoder != "libx264" and config.encoder not in av.codecs_available:
            logger.warning(
                "encoder.fallback wanted=%s using=libx264 reason=not in this PyAV build",
                config.encoder,
            )
        elif config.encoder != "libx264":
            try:
                ctx = self._open(config.encoder, width, height, fps, config)
            except (av.error.FFmpegError, ValueError, OSError) as exc:
                # No such device here, or it refuses these settings: libx264 does the job.
                logger.warning(
                    "encoder.fallback wanted=%s using=libx264 reason=it failed to open: %s",
                    config.encoder,
                    exc,
                )
            else:
                logger.info("encoder.open name=%s size=%dx%d", config.encoder, width, height)
        self._ctx = ctx or self._open("libx264", width, height, fps, config)
        self.name = self._ctx.name
        self._width = width
        self._height = height
        self._last_pts = -1
        self._wall_by_pts: dict[int, tuple[float, float]] = {}

    @staticmethod
    def _open(
        name: str, width: int, height: int, fps: Fraction, config: RecorderConfig
    ) -> av.CodecContext:
        ctx = av.CodecContext.create(name, "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = fps
        ctx.gop_size = max(1, round(config.keyframe_interval_s * float(fps)))
        ctx.max_b_frames = 0
        if name != "libx264":
            ctx.bit_rate = (config.bitrate_kbps or _HARDWARE_KBPS) * 1000
            ctx.open()
            return ctx
        options = {"preset": config.x264_preset, "tune": config.x264_tune}
        if config.bitrate_kbps is None:
            options["crf"] = str(config.crf)
        else:
            ctx.bit_rate = config.bitrate_kbps * 1000
            options["maxrate"] = f"{config.bitrate_kbps * 3 // 2}k"
            options["bufsize"] = f"{config.bitrate_kbps * 2}k"
        ctx.options = options
        ctx.open()
        return ctx

    def encode(
        self, y: Plane, u: Plane, v: Plane, pts_s: float, wall_s: float
    ) -> list[TimedPacket]:
        frame = self._frame(y, u, v)
        pts = max(round(pts_s / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._wall_by_pts[pts] = (pts_s, wall_s)
        return self._collect(self._ctx.encode(frame))

    def flush(self) -> list[TimedPacket]:
        return self._collect(self._ctx.encode(None))

    def _frame(self, y: Plane, u: Plane, v: Plane) -> av.VideoFrame:
        frame = av.VideoFrame(self._width, self._height, "yuv420p")
        planes = frame.planes
        if all(p.line_size == a.shape[1] for p, a in zip(planes, (y, u, v), strict=True)):
            for plane, array in zip(planes, (y, u, v), strict=True):
                plane.update(np.ascontiguousarray(array))  # type: ignore[arg-type]  # any buffer
            return frame
        stacked = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
        return av.VideoFrame.from_ndarray(
            stacked.reshape(self._height * 3 // 2, self._width), format="yuv420p"
        )

    def _collect(self, packets: Iterable[Any]) -> list[TimedPacket]:
        out = []
        for packet in packets:
            assert packet.pts is not None
            assert packet.dts is not None
            # Packets come out in input order (no B-frames): forget frames the encoder skipped.
            while self._wall_by_pts and next(iter(self._wall_by_pts)) < packet.pts:
                del self._wall_by_pts[next(iter(self._wall_by_pts))]
            pts_s, wall_s = self._wall_by_pts.pop(packet.pts, (float(packet.pts * TIME_BASE), 0.0))
            out.append(
                TimedPacket(
                    data=bytes(packet),
                    pts=packet.pts,
                    dts=packet.dts,
                    time_base=TIME_BASE,
                    keyframe=packet.is_keyframe,
                    pts_s=pts_s,
                    wall_s=wall_s,
                )
            )
        return out
