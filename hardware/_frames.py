"""The records every camera source yields: raw frames and, where the source has them, H.264 packets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["CameraSource", "EncodedPacket", "Frame", "StreamInfo", "StreamPacket"]

Plane = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One H.264 access unit as the source delivered it (Annex B), to be remuxed, never re-encoded."""

    data: bytes = field(repr=False)
    pts: int
    dts: int
    time_base: Fraction
    keyframe: bool

    def __post_init__(self) -> None:
        if self.time_base <= 0:
            raise ValueError(f"time_base must be positive, got {self.time_base}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured picture in yuv420p.

    ``index`` counts captured frames from 0; a gap in the indices a consumer sees is a dropped frame.
    ``pts_s`` is the capture time in seconds since the source started (virtual time for the
    simulator), ``wall_s`` the UTC epoch seconds of capture. ``truth`` names the ground-truth actors
    visible (simulator only). ``packet`` is the encoded form of this same picture when the source
    delivers H.264. The planes may be read-only views of a decoder's buffers: copy a plane
    before changing it.

    From a two-stream camera the planes are the detect stream's latest picture (smaller than the
    record stream, see ``TwoStreamCamera.detect_info``) and ``packet`` the record stream's access
    unit of the same moment; ``new_picture`` is False when the planes repeat the picture of an
    earlier frame (the detect stream runs slower, or has not delivered yet), so motion need not
    look at them again.
    """

    index: int
    pts_s: float
    wall_s: float
    y: Plane = field(repr=False)
    u: Plane = field(repr=False)
    v: Plane = field(repr=False)
    truth: frozenset[str] = frozenset()
    packet: EncodedPacket | None = None
    new_picture: bool = True

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        h, w = self.y.shape
        if self.u.shape != (h // 2, w // 2) or self.v.shape != (h // 2, w // 2):
            raise ValueError(
                f"chroma planes must be {(h // 2, w // 2)} for a {w}x{h} luma plane, "
                f"got {self.u.shape} and {self.v.shape}"
            )

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, slots=True)
class StreamPacket:
    """One access unit of a record stream that is never decoded: the packet and its times
    (``pts_s`` from the stream's start, ``wall_s`` UTC capture time), as :class:`Frame` has them."""

    index: int
    pts_s: float
    wall_s: float
    packet: EncodedPacket
    truth: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a source delivers: picture size, nominal rate, and the codec of its packets if any."""

    width: int
    height: int
    fps: Fraction
    codec: str | None = None  # "h264" when frames carry packets
    extradata: bytes | None = field(default=None, repr=False)  # codec parameters (SPS/PPS), if any


@runtime_checkable
class CameraSource(Protocol):
    """A camera: async frames in capture order; cancelling the iteration stops the capture."""

    name: str

    @property
    def info(self) -> StreamInfo: ...

    def frames(self) -> AsyncIterator[Frame]: ...

    async def close(self) -> None: ...
