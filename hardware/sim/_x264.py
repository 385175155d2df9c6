"""A libx264 encoder through PyAV, used to simulate a camera with a hardware H.264 encoder."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hardware._frames import EncodedPacket

__all__ = ["X264Encoder"]


class X264Encoder:
    """Encodes yuv420p planes to Annex B H.264: no B-frames, SPS/PPS before every keyframe."""

    def __init__(self, width: int, height: int, fps: int, *, keyint: int) -> None:
        self.time_base = Fraction(1, fps)
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = self.time_base
        ctx.framerate = Fraction(fps)
        ctx.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:repeat-headers=1",
        }
        self._ctx = ctx

    def encode(
        self, y: npt.NDArray[np.uint8], u: npt.NDArray[np.uint8], v: npt.NDArray[np.uint8], pts: int
    ) -> list[EncodedPacket]:
        """Encode one picture; zero-latency mode returns its packet at once."""
        h, w = y.shape
        planes = np.concatenate((y.reshape(-1), u.reshape(-1), v.reshape(-1)))
        frame = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
        frame.pts = pts
        frame.time_base = self.time_base
        return [self._packet(p) for p in self._ctx.encode(frame)]

    def flush(self) -> list[EncodedPacket]:
        return [self._packet(p) for p in self._ctx.encode(None)]

    def _packet(self, packet: Any) -> EncodedPacket:
        pts = packet.pts if packet.pts is not None else 0
        dts = packet.dts if packet.dts is not None else pts
        return EncodedPacket(bytes(packet), pts, dts, self.time_base, bool(packet.is_keyframe))
