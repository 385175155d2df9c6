"""A real speaker: an ALSA output device, written through PyAV (ffmpeg's ``alsa`` muxer).

The device is opened when the sink is made, so a wrong name or a missing sound card fails at
start-up with one :class:`~hardware.SpeakerError`, not at the first word an owner says. A PyAV
whose ffmpeg was built without libavdevice's ALSA output fails the same way, naming what is
missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import av

from hardware._audio import AUDIO_RATE, AudioChunk
from hardware._speaker import SPEAKER_BUFFER_S, SpeakerError, _Pacer

__all__ = ["AlsaSink", "alsa_available"]

logger = logging.getLogger(__name__)


def alsa_available(formats: Collection[str] | None = None) -> bool:
    """Whether this PyAV's ffmpeg can write to ALSA (libavdevice built with ALSA); ``formats``:
    the formats to look in (default: ``av.formats_available``)."""
    return "alsa" in (av.formats_available if formats is None else formats)


class AlsaSink:
    """A speaker on the ALSA output ``device`` (``default``, ``hw:0,0``, ``plughw:1``, …): mono
    16-bit PCM at ``sample_rate``, paced in real time like every sink. Blocking writes to the
    device run off the event loop, one at a time, in order."""

    def __init__(
        self,
        device: str,
        sample_rate: int = AUDIO_RATE,
        *,
        buffer_s: float = SPEAKER_BUFFER_S,
        formats: Collection[str] | None = None,
    ) -> None:
        """``formats``: the ffmpeg formats to count on (default: this PyAV's own)."""
        if not alsa_available(formats):
            raise SpeakerError(
                f"cannot open ALSA output {device!r}: this PyAV's ffmpeg has no ALSA output "
                "device (libavdevice without alsa); install a PyAV built with ALSA, or set the "
                "camera's speaker to wav:PATH or none"
            )
        self.device = device
        self.sample_rate = sample_rate
        self._pacer = _Pacer(sample_rate, buffer_s)
        self._pts = 0
        self._container: Any = None
        try:
            container = av.open(device, "w", format="alsa")
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise self._cannot_open(exc) from exc
        try:
            self._stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
            container.start_encoding()  # opens the PCM device now, not at the first chunk
        except (OSError, ValueError, av.FFmpegError) as exc:
            _close_quietly(container)
            raise self._cannot_open(exc) from exc
        self._container = container

    def __repr__(self) -> str:
        return f"AlsaSink({self.device!r}, {self.sample_rate} Hz)"

    async def play(self, chunk: AudioChunk) -> None:
        if self._container is None:
            raise SpeakerError("the speaker is closed")
        self._pacer.check(chunk)
        frame = av.AudioFrame.from_ndarray(
            chunk.samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += chunk.samples.shape[0]
        await asyncio.to_thread(self._write, frame)
        _, wait = self._pacer.queue(chunk)
        if wait > 0:
            await asyncio.sleep(wait)

    async def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            await asyncio.to_thread(_close_quietly, container)

    def _write(self, frame: av.AudioFrame) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise SpeakerError(
                f"ALSA output {self.device!r} failed while playing: {exc}; check the sound card"
            ) from exc

    def _cannot_open(self, exc: BaseException) -> SpeakerError:
        reason = getattr(exc, "strerror", None) or str(exc)
        return SpeakerError(
            f"cannot open ALSA output {self.device!r}: {reason}; list the devices with "
            "`aplay -L` and name one (alsa:default, alsa:hw:0,0), or set the speaker to none"
        )


def _close_quietly(container: Any) -> None:
    try:
        container.close()
    except (OSError, av.FFmpegError) as exc:
        logger.warning("speaker.alsa_close_failed error=%s", type(exc).__name__)
