"""The pre-roll ring buffer: the last few seconds of ENCODED packets, always starting at a keyframe."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["PrerollBuffer", "TimedPacket"]


@dataclass(frozen=True, slots=True)
class TimedPacket:
    """One H.264 access unit with its source time (``pts_s``) and capture wall time (``wall_s``)."""

    data: bytes = field(repr=False)
    pts: int
    dts: int
    time_base: Fraction
    keyframe: bool
    pts_s: float
    wall_s: float


class PrerollBuffer:
    """Whole GOPs of encoded packets covering at least ``window_s`` seconds, capped at ``max_bytes``.

    Trimming drops the oldest GOP only while what remains still covers the window, so a clip opened
    from this buffer starts at a keyframe and carries the full pre-roll when it was recorded. The
    byte cap wins over the window (a stream with very long GOPs), but the newest GOP is always kept.
    Packets before the first keyframe are never kept: they cannot be decoded on their own.
    """

    def __init__(self, window_s: float, max_bytes: int) -> None:
        self._window_s = window_s
        self._max_bytes = max_bytes
        self._gops: deque[list[TimedPacket]] = deque()
        self._bytes = 0

    def push(self, packet: TimedPacket) -> None:
        if packet.keyframe:
            self._gops.append([])
        elif not self._gops:
            return
        self._gops[-1].append(packet)
        self._bytes += len(packet.data)
        self._trim(packet.pts_s)

    def packets(self) -> list[TimedPacket]:
        """The buffered packets, oldest first; the first one is a keyframe (or the list is empty)."""
        return [packet for gop in self._gops for packet in gop]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def duration_s(self) -> float:
        if not self._gops:
            return 0.0
        return self._gops[-1][-1].pts_s - self._gops[0][0].pts_s

    def _trim(self, now_pts_s: float) -> None:
        while len(self._gops) > 1 and (
            now_pts_s - self._gops[1][0].pts_s >= self._window_s or self._bytes > self._max_bytes
        ):
            dropped = self._gops.popleft()
            self._bytes -= sum(len(p.data) for p in dropped)
