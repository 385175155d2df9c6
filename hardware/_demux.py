"""Reading one opened PyAV container: decoded yuv420p planes paired with H.264 packets.

Sync and blocking: the async sources run it on their own single worker thread. The planes are
read-only views of the decoder's own picture buffers, not copies: FFmpeg reference-counts them,
so a picture stays intact for as long as any view of it lives, and the decoder never writes into
a picture it has handed out.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hardware._audio import AUDIO_RATE, AudioChunk, StreamMicrophone
from hardware._frames import EncodedPacket, StreamInfo
from hardware.annexb import is_reference
from hardware.errors import CameraOpenFailed

__all__ = [
    "DECODE_THREAD_TYPE",
    "Decoded",
    "StreamReader",
    "avcc_to_annexb",
    "open_container",
    "plane_view",
    "redact_url",
]

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]

_AUDIO_CHUNK = AUDIO_RATE // 50  # 20 ms: one Opus frame

# Frame and slice threads: on a multi-core device a file replays faster than one core decodes it.
DECODE_THREAD_TYPE = "AUTO"


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded picture: planes, its time in seconds from the stream's start, and a packet."""

    y: U8 = field(repr=False)
    u: U8 = field(repr=False)
    v: U8 = field(repr=False)
    pts_s: float
    packet: EncodedPacket | None
    new_picture: bool = True  # False: the planes repeat the last picture (this one went undecoded)


def open_container(
    url: str,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    timeout: float | tuple[float, float] | None = None,
) -> Any:
    """Open ``url`` for reading; raises CameraOpenFailed naming the url and the reason."""
    try:
        container = av.open(url, format=format, options=options or {}, timeout=timeout)
    except (av.error.FFmpegError, OSError) as exc:
        reason = _reason(exc).replace(url, redact_url(url))  # never echo a password
        raise CameraOpenFailed(f"cannot open {redact_url(url)}: {reason}") from exc
    if not container.streams.video:
        container.close()
        raise CameraOpenFailed(f"cannot open {redact_url(url)}: it has no video stream")
    return container


def redact_url(url: str) -> str:
    """The url with any user name and password replaced by ``***`` (they are secrets)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


def _reason(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else str(exc)


def avcc_to_annexb(extradata: bytes) -> bytes:
    """SPS and PPS from an MP4 ``avcC`` record, as Annex B NAL units."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC record")
    out = bytearray()
    pos = 5
    for count_mask in (0x1F, 0xFF):  # SPS count is 5 bits, PPS count 8 bits
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            out += b"\x00\x00\x00\x01" + extradata[pos + 2 : pos + 2 + size]
            pos += 2 + size
    return bytes(out)


class StreamReader:
    """Decodes the first video stream of a container; H.264 packets pass through untouched.

    A frame carries the packets in decode order (the n-th frame out gets the n-th packet in):
    for streams without B-frames, which is what cameras send, that is the frame's own packet.

    ``one_thread`` decodes on the calling thread only (for small streams: less memory).
    With a ``microphone``, the container's first audio stream (if any) is its sound: decoded,
    as 20 ms chunks of 48 kHz mono, only while someone listens (otherwise its packets are
    dropped undecoded), each stamped by ``audio_time`` (stream seconds to the camera's).
    """

    def __init__(
        self,
        container: Any,
        *,
        microphone: StreamMicrophone | None = None,
        audio_time: Callable[[float], float] = float,
        one_thread: bool = False,
    ) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        audio = container.streams.audio
        self._audio = audio[0] if audio and microphone is not None else None
        self._microphone = microphone
        self._audio_time = audio_time
        self._resampler: Any = None
        self._audio_start_s = 0.0
        self._audio_samples = 0
        if one_thread:
            # A small stream (a camera's detect substream) decodes in real time on one thread;
            # frame threads would each hold their own pictures (a few MB per camera).
            self._stream.codec_context.thread_count = 1
        else:
            self._stream.thread_type = DECODE_THREAD_TYPE
        ctx = self._stream.codec_context
        self.is_h264 = ctx.name == "h264"
        extradata = bytes(ctx.extradata or b"")
        self._bsf = None
        self.extradata: bytes | None = None
        if self.is_h264 and extradata[:1] == b"\x01":
            self._bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", self._stream)
            self.extradata = avcc_to_annexb(extradata)
        elif self.is_h264 and extradata:
            self.extradata = extradata
        self.time_base = Fraction(self._stream.time_base or Fraction(1, 90000))
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(30)
        self.fps = Fraction(rate)
        self._ticks_per_frame = float(1 / (self.fps * self.time_base))
        self._frame_s = float(1 / self.fps)
        self._pending: deque[tuple[EncodedPacket, bool]] = deque()  # (packet, decoded)
        self._light = False
        self._last: Decoded | None = None
        self._packets_in = 0
        self._frames_out = 0

    def info(self) -> StreamInfo:
        ctx = self._stream.codec_context
        return StreamInfo(
            width=ctx.width - ctx.width % 2,
            height=ctx.height - ctx.height % 2,
            fps=self.fps,
            codec="h264" if self.is_h264 else None,
            extradata=self.extradata,
        )

    def decode_lightly(self) -> None:
        """The pictures only feed motion detection: decode no more than that needs. Pictures that
        no other references (``nal_ref_idc`` 0) are not decoded (the frame repeats the last picture,
        ``new_picture`` False), and the deblocking filter is skipped (about a fifth of an H.264
        decode; motion on a downscaled luma plane does not see its blocks). Call before reading."""
        if not self.is_h264:
            return
        self._light = True
        self._stream.codec_context.options = {"skip_loop_filter": "all"}

    @property
    def has_audio(self) -> bool:
        """Whether the container has a sound track for the microphone."""
        return self._audio is not None

    def read(self) -> Iterator[Decoded]:
        """Every picture of the stream, then stops at its end."""
        streams = (self._stream,) if self._audio is None else (self._stream, self._audio)
        for packet in self._container.demux(*streams):
            if packet.stream_index != self._stream.index:
                self._hear(packet)
                continue
            if (
                self._light
                and packet.size
                and self._last is not None
                and not packet.is_keyframe
                and not is_reference(bytes(packet), length_prefixed=self._bsf is not None)
            ):
                self._queue_packets(packet, decoded=False)  # nothing depends on this picture
                continue
            # Decode before filtering: the bitstream filter takes the packet's data.
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                logger.warning("camera.decode_error reason=%s", exc)
                continue  # this packet gave no picture, so it is not queued either
            if packet.size and self.is_h264:
                self._queue_packets(packet)
            for frame in frames:
                yield from self._skipped()
                yield self._decoded(frame)
        yield from self._skipped()

    def close(self) -> None:
        self._container.close()

    def _hear(self, packet: Any) -> None:
        """Decode one audio packet for the microphone's listeners, if there are any."""
        microphone = self._microphone
        if microphone is None or not microphone.listening:
            self._resampler = None  # a new listener starts a fresh run of chunks
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            logger.warning("camera.audio_decode_error reason=%s", exc)
            return
        for frame in frames:
            if self._resampler is None:
                self._resampler = av.AudioResampler(
                    format="s16", layout="mono", rate=AUDIO_RATE, frame_size=_AUDIO_CHUNK
                )
                self._audio_start_s = float(frame.time) if frame.time is not None else 0.0
                self._audio_samples = 0
            for chunk in self._resampler.resample(frame):
                samples = chunk.to_ndarray().reshape(-1)
                at_s = self._audio_start_s + self._audio_samples / AUDIO_RATE
                self._audio_samples += samples.shape[0]
                microphone.feed(AudioChunk(self._audio_time(at_s), samples))

    def _skipped(self) -> Iterator[Decoded]:
        """The undecoded pictures queued before the next decoded one, as repeats of the last."""
        last = self._last
        while self._pending and not self._pending[0][1] and last is not None:
            packet, _ = self._pending.popleft()
            pts_s = float(packet.pts * packet.time_base)
            yield Decoded(last.y, last.u, last.v, pts_s, packet, new_picture=False)

    def _queue_packets(self, packet: Any, *, decoded: bool = True) -> None:
        out = self._bsf.filter(packet) if self._bsf is not None else [packet]
        for p in out:
            pts, dts = p.pts, p.dts
            if pts is None:
                # Raw Annex B files carry no timestamps: count packets at the nominal rate.
                pts = dts if dts is not None else round(self._packets_in * self._ticks_per_frame)
            if dts is None:
                dts = pts
            self._packets_in += 1
            self._pending.append(
                (EncodedPacket(bytes(p), pts, dts, self.time_base, bool(p.is_keyframe)), decoded)
            )

    def _decoded(self, frame: Any) -> Decoded:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
        y = plane_view(frame.planes[0], w, h)
        u = plane_view(frame.planes[1], w // 2, h // 2)
        v = plane_view(frame.planes[2], w // 2, h // 2)
        pts_s = float(frame.time) if frame.time is not None else self._frames_out * self._frame_s
        self._frames_out += 1
        packet = self._pending.popleft()[0] if self._pending else None
        self._last = Decoded(y, u, v, pts_s, packet)
        return self._last


def plane_view(plane: Any, width: int, height: int) -> U8:
    """A read-only ``height`` x ``width`` view of a decoded plane (rows are ``line_size`` apart)."""
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:height, :width]
    rows.flags.writeable = False  # the buffer is the decoder's: nobody may paint into it
    return rows
