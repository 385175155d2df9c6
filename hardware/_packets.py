"""PacketCamera: a camera's record stream read as H.264 packets only, never decoded.

A two-stream camera records its main stream (``TwoStreamCamera``): the box only demuxes it and
remuxes its packets into segments, which costs a small share of what decoding 1080p would.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hardware._backoff import Backoff
from hardware._clock import Clock, SystemClock
from hardware._demux import avcc_to_annexb, open_container, redact_url
from hardware._frames import EncodedPacket, StreamInfo, StreamPacket
from hardware._worker import Worker
from hardware.errors import CameraOpenFailed, HardwareError

__all__ = ["PacketCamera", "RecordStream"]

logger = logging.getLogger(__name__)

_BATCH = 8  # packets demuxed per trip to the worker thread (a 1080p packet is tens of KB)
# A file is opened without FFmpeg's stream analysis (which decodes frames for 5 s of stream:
# a tenth of a second per 1080p open, a second and more at start with many cameras); the size
# comes from the parameter sets and the rate from the first packets' timestamps (_RATE_PACKETS).
_FILE_PROBE = {"analyzeduration": "0", "fpsprobesize": "0", "threads": "1"}
_RATE_PACKETS = 8


class RecordStream:
    """What a two-stream camera records from: ``info`` and ``packets()`` (a Protocol in spirit;
    :class:`PacketCamera` and the simulator's record stream implement it)."""

    name: str

    @property
    def info(self) -> StreamInfo:
        raise NotImplementedError

    def packets(self) -> AsyncIterator[StreamPacket]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PacketCamera(RecordStream):
    """An H.264 stream (a file, ``rtsp://…``) demuxed into Annex B packets, never decoded.

    A file replays in real time with ``realtime`` (each packet waits for its due time), in a loop
    with ``loop`` (times and timestamps continue). A live url reconnects with backoff when the
    stream ends or fails. Opening a stream that is not H.264 raises CameraOpenFailed: only H.264
    can be remuxed into the clips.
    """

    def __init__(
        self,
        url: str | Path,
        *,
        name: str | None = None,
        loop: bool = False,
        realtime: bool = True,
        live: bool = False,
        options: dict[str, str] | None = None,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = str(url)
        self.name = name or redact_url(self.url)
        self.loop = loop
        self.realtime = realtime
        self.live = live
        self._options = dict(options or {})
        self._clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._worker = Worker(f"{self.name}-record")
        self._info: StreamInfo | None = None
        self._failures = 0
        self._closed = False
        self._reader: _PacketReader | None = None
        self._opened: _PacketReader | None = None  # opened by the constructor, read first
        if not live:
            # Fail now, with the reason, for a file that is not H.264; its first pass reads it.
            self._opened = self._open_reader()

    @property
    def info(self) -> StreamInfo:
        """Size, rate and parameter sets of the stream; known once opened (or connected)."""
        if self._info is None:
            raise HardwareError(f"camera {self.name} has not connected yet: await connect() first")
        return self._info

    @property
    def reconnecting(self) -> bool:
        return self._failures > 0 and not self._closed

    async def connect(self) -> StreamInfo:
        """Open the stream once to learn what it delivers (retrying a live one with backoff)."""
        while self._info is None:
            try:
                reader = await self._worker.run(self._open_reader)
            except CameraOpenFailed as exc:
                if not self.live:
                    raise
                await self._failed(str(exc))
                continue
            await self._worker.run(reader.close)
        return self._info

    async def packets(self) -> AsyncIterator[StreamPacket]:
        """Packets in decode order until the stream ends (or forever: ``loop``, or a live url)."""
        index = 0
        offset_s = 0.0  # added to the times of the current pass (a looped file, a reconnect)
        start_mono: float | None = None
        start_wall = self._clock.now()
        last_s = 0.0
        while not self._closed:
            try:
                reader = self._opened or await self._worker.run(self._open_reader)
            except CameraOpenFailed as exc:
                if not self.live:
                    raise
                await self._failed(str(exc))
                continue
            self._opened = None
            self._reader = reader
            if start_mono is None:
                start_mono = self._clock.monotonic()
            items = reader.packets()
            first_s: float | None = None
            try:
                while not self._closed:
                    batch = await self._worker.run(_next_batch, items)
                    if not batch:
                        break
                    for pts_s, packet in batch:
                        if first_s is None:
                            first_s = pts_s
                        if self.live:
                            at_s = self._clock.monotonic() - start_mono
                        else:
                            at_s = offset_s + pts_s - first_s
                        if self.realtime and not self.live:
                            wait_s = start_mono + at_s - self._clock.monotonic()
                            if wait_s > 0:
                                await self._clock.sleep(wait_s)
                        shift = round(offset_s / packet.time_base) if offset_s else 0
                        if shift:
                            packet = EncodedPacket(
                                packet.data,
                                packet.pts + shift,
                                packet.dts + shift,
                                packet.time_base,
                                packet.keyframe,
                            )
                        last_s = at_s
                        self._failures = 0
                        wall_s = self._clock.now() if self.realtime else start_wall + at_s
                        yield StreamPacket(index, at_s, wall_s, packet)
                        index += 1
            except (av.error.FFmpegError, OSError) as exc:
                if not self.live:
                    raise
                logger.warning("camera.record_read_failed camera=%s reason=%s", self.name, exc)
            finally:
                if self._reader is reader:  # else close() has closed it
                    self._reader = None
                    await self._worker.run(reader.close)
            if self.live:
                await self._failed(f"camera {self.name}: the record stream ended")
                offset_s = last_s
            elif self.loop and first_s is not None:
                assert self._info is not None
                offset_s = last_s + float(1 / self._info.fps)
            else:
                return

    async def close(self) -> None:
        """Stop reading; :meth:`packets` then ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for reader in (self._reader, self._opened):
            if reader is not None:
                await self._worker.run(reader.close)
        self._reader = self._opened = None
        self._worker.shutdown()

    def _open_reader(self) -> _PacketReader:
        options = self._options or ({} if self.live else dict(_FILE_PROBE))
        container = open_container(self.url, options=options or None)
        reader = _PacketReader(container, redact_url(self.url), measure_rate=not self._options)
        self._info = reader.info
        return reader

    async def _failed(self, message: str) -> None:
        self._failures += 1
        delay_s = self._backoff.delay_s(self._failures - 1, 0.5)
        logger.info("camera.retry camera=%s reason=%s delay_s=%.3f", self.name, message, delay_s)
        await self._clock.sleep(delay_s)


class _PacketReader:
    """One opened container's first video stream as Annex B packets (on the worker thread)."""

    def __init__(self, container: Any, display: str, *, measure_rate: bool = False) -> None:
        self._container = container
        self._peeked: list[Any] = []
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.name != "h264":
            container.close()
            raise CameraOpenFailed(
                f"cannot record {display}: its video is {ctx.name}, not H.264; a record stream "
                "is remuxed, never re-encoded, so it must be H.264 (or drop detect= to encode it)"
            )
        extradata = bytes(ctx.extradata or b"")
        self._bsf = None
        parameter_sets = extradata or None
        if extradata[:1] == b"\x01":
            self._bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
            parameter_sets = avcc_to_annexb(extradata)
        self._stream = stream
        self._time_base = Fraction(stream.time_base or Fraction(1, 90000))
        fps = self._measured_rate() if measure_rate else None
        fps = fps or Fraction(stream.average_rate or stream.guessed_rate or Fraction(30))
        self._frame_ticks = float(1 / (fps * self._time_base))
        self._count = 0
        self.info = StreamInfo(
            ctx.width - ctx.width % 2, ctx.height - ctx.height % 2, fps, "h264", parameter_sets
        )

    def packets(self) -> Iterator[tuple[float, EncodedPacket]]:
        peeked, self._peeked = self._peeked, []
        for packet in itertools.chain(peeked, self._container.demux(self._stream)):
            if not packet.size:
                continue
            for p in self._bsf.filter(packet) if self._bsf is not None else [packet]:
                pts = p.pts
                if pts is None:
                    pts = p.dts if p.dts is not None else round(self._count * self._frame_ticks)
                dts = pts if p.dts is None else p.dts
                self._count += 1
                yield (
                    float(pts * self._time_base),
                    EncodedPacket(bytes(p), pts, dts, self._time_base, bool(p.is_keyframe)),
                )

    def close(self) -> None:
        self._container.close()

    def _measured_rate(self) -> Fraction | None:
        """The frame rate from the first packets' timestamps (kept to be read first), or None."""
        stamps = []
        for packet in self._container.demux(self._stream):
            self._peeked.append(packet)
            if packet.size and packet.pts is not None:
                stamps.append(packet.pts)
            if len(stamps) >= _RATE_PACKETS or len(self._peeked) >= 4 * _RATE_PACKETS:
                break
        steps = sorted(b - a for a, b in itertools.pairwise(sorted(stamps)) if b > a)
        if not steps:
            return None
        rate = 1 / (steps[len(steps) // 2] * self._time_base)
        return Fraction(rate).limit_denominator(1001)


def _next_batch(items: Iterator[tuple[float, EncodedPacket]]) -> list[tuple[float, EncodedPacket]]:
    return list(itertools.islice(items, _BATCH))
