"""LiveCamera: V4L2 devices and RTSP cameras through PyAV, reconnecting with exponential backoff."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import av

from hardware._audio import StreamMicrophone
from hardware._backoff import Backoff
from hardware._clock import Clock, SystemClock
from hardware._demux import Decoded, StreamReader, open_container, redact_url
from hardware._frames import EncodedPacket, Frame, StreamInfo
from hardware._worker import Worker
from hardware.errors import CameraOpenFailed, HardwareError

__all__ = ["LiveCamera", "SourceSpec", "parse_source"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How to open a live source with PyAV: the url, the demuxer and its options."""

    url: str = field(repr=False)  # may hold a user name and password
    format: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def display_url(self) -> str:
        """The url with any credentials replaced by ``***``."""
        return redact_url(self.url)


def parse_source(
    source: str, *, v4l2_options: Mapping[str, str] | None = None, read_timeout_s: float = 10.0
) -> SourceSpec:
    """``v4l2:/dev/videoN``, ``rtsp://…``/``rtsps://…`` (over TCP), or ``file:/path``."""
    if source.startswith("v4l2:"):
        device = source.removeprefix("v4l2:")
        if not device.startswith("/dev/"):
            raise CameraOpenFailed(
                f"camera source {source!r} is not a V4L2 device: use v4l2:/dev/videoN"
            )
        return SourceSpec(device, "v4l2", dict(v4l2_options or {}))
    if source.startswith(("rtsp://", "rtsps://")):
        # FFmpeg's rtsp "timeout" is the socket read timeout, in microseconds.
        options = {"rtsp_transport": "tcp", "timeout": str(round(read_timeout_s * 1_000_000))}
        return SourceSpec(source, None, options)
    if source.startswith("file:"):
        return SourceSpec(source.removeprefix("file:"))
    raise CameraOpenFailed(
        f"camera source {redact_url(source)!r} is not supported: use v4l2:/dev/videoN, "
        "rtsp://host/path or file:/path"
    )


class LiveCamera:
    """A live camera (implements CameraSource) that reconnects until closed.

    When opening fails or the stream ends or errors, it waits ``backoff.delay_s(n)`` on ``clock``
    (n counts failures since the last frame) and tries again; after ``max_attempts`` failures in
    a row ``frames()`` raises CameraOpenFailed. H.264 streams pass their packets through.
    ``pts_s`` is the monotonic time since the first frame; ``wall_s`` is ``clock.now()``.
    ``info`` is known once ``connect()`` (or the first frame) has succeeded, and so is
    ``microphone``: the stream's sound track, if it has one (else None), decoded only while
    someone listens and stamped on the frames' clock.
    """

    def __init__(
        self,
        source: str,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        rand: Callable[[], float] = random.random,
        max_attempts: int | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        v4l2_options: Mapping[str, str] | None = None,
        name: str | None = None,
        one_thread: bool = False,
    ) -> None:
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.source = source
        self.spec = parse_source(source, v4l2_options=v4l2_options, read_timeout_s=read_timeout_s)
        self.name = name or redact_url(source)
        self._clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._rand = rand
        self._max_attempts = max_attempts
        self._timeout = (open_timeout_s, read_timeout_s)
        self._worker = Worker("live")
        self._reader: StreamReader | None = None
        self._decoded: Iterator[Decoded] | None = None
        self._info: StreamInfo | None = None
        self._failures = 0
        self._index = 0
        self._start_monotonic: float | None = None
        self._closed = False
        self.connections = 0  # successful opens so far
        self.microphone: StreamMicrophone | None = None
        self._sound = StreamMicrophone()
        self._light = False
        self._one_thread = one_thread  # a small stream: decode on one thread (less memory)

    @property
    def info(self) -> StreamInfo:
        """What the stream delivers; raises HardwareError before the first :meth:`connect`."""
        if self._info is None:
            raise HardwareError(f"camera {self.name} has not connected yet: await connect() first")
        return self._info

    @property
    def reconnecting(self) -> bool:
        """Whether the stream failed since the last frame (backing off or opening again)."""
        return self._failures > 0 and not self._closed

    async def connect(self) -> StreamInfo:
        """Open the source, retrying with backoff; returns what it delivers."""
        while self._reader is None:
            if self._closed:
                raise HardwareError(f"camera {self.name} is closed")
            try:
                container = await self._worker.run(self._open)
            except CameraOpenFailed as exc:
                await self._failed(str(exc), exc)
                continue
            self._reader = StreamReader(
                container,
                microphone=self._sound,
                audio_time=self._audio_time,
                one_thread=self._one_thread,
            )
            if self._light:
                self._reader.decode_lightly()
            self._decoded = None
            self._info = self._reader.info()
            if self._reader.has_audio:
                self.microphone = self._sound
            self.connections += 1
            logger.info("camera.connected camera=%s codec=%s", self.name, self._info.codec)
        assert self._info is not None
        return self._info

    def decode_lightly(self) -> None:
        """The pictures only feed motion (the packets are what is recorded): decode no more than
        that needs (see ``StreamReader.decode_lightly``), from the next connection on."""
        self._light = True
        if self._reader is not None and self._decoded is None:
            self._reader.decode_lightly()

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames until closed, across reconnects; indices continue, lost frames leave no gap."""
        shift_base: int | None = None  # packet timestamp shift for the current connection
        while not self._closed:
            await self.connect()
            assert self._reader is not None
            if self._decoded is None:
                self._decoded = self._reader.read()
                shift_base = None
            try:
                decoded = await self._worker.run(next, self._decoded, None)
            except (av.error.FFmpegError, OSError) as exc:
                reason = str(exc).replace(self.spec.url, self.spec.display_url)
                await self._disconnected(f"read failed: {reason}")
                continue
            if decoded is None:
                await self._disconnected("the stream ended")
                continue
            now = self._clock.monotonic()
            if self._start_monotonic is None:
                self._start_monotonic = now
            pts_s = now - self._start_monotonic
            packet = decoded.packet
            if packet is not None:
                if shift_base is None:
                    shift_base = round(pts_s / packet.time_base) - packet.dts
                packet = _shifted(packet, shift_base)
            self._failures = 0
            frame = Frame(
                self._index,
                pts_s,
                self._clock.now(),
                decoded.y,
                decoded.u,
                decoded.v,
                packet=packet,
                new_picture=decoded.new_picture,
            )
            self._index += 1
            yield frame

    async def close(self) -> None:
        """Close the stream and stop its decoder thread; :meth:`frames` then ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            await self._worker.run(self._reader.close)
            self._reader = None
        self._worker.shutdown()

    def _audio_time(self, _stream_s: float) -> float:
        """A live stream's sound is stamped when it is decoded, as its frames are."""
        if self._start_monotonic is None:
            return 0.0
        return max(0.0, self._clock.monotonic() - self._start_monotonic)

    def _open(self) -> object:
        return open_container(
            self.spec.url,
            format=self.spec.format,
            options=dict(self.spec.options),
            timeout=self._timeout,
        )

    async def _disconnected(self, reason: str) -> None:
        logger.warning("camera.disconnected camera=%s reason=%s", self.name, reason)
        if self._reader is not None:
            await self._worker.run(self._reader.close)
        self._reader = None
        self._decoded = None
        await self._failed(f"camera {self.name}: {reason}", None)

    async def _failed(self, message: str, cause: BaseException | None) -> None:
        self._failures += 1
        if self._max_attempts is not None and self._failures >= self._max_attempts:
            raise CameraOpenFailed(
                f"{message} (gave up after {self._failures} "
                f"{'attempt' if self._failures == 1 else 'attempts in a row'})"
            ) from cause
        delay_s = self._backoff.delay_s(self._failures - 1, self._rand())
        logger.info(
            "camera.retry camera=%s attempt=%s delay_s=%.3f", self.name, self._failures, delay_s
        )
        await self._clock.sleep(delay_s)


def _shifted(packet: EncodedPacket, shift: int) -> EncodedPacket:
    return EncodedPacket(
        packet.data,
        packet.pts + shift,
        packet.dts + shift,
        Fraction(packet.time_base),
        packet.keyframe,
    )
