"""Sound out of the doorbell: the protocol a speaker implements, the floor that decides who plays,
a simulated speaker that remembers what it played, and a WAV-file speaker.

A camera with a speaker exposes it as its ``speaker`` attribute (an :class:`AudioSink`);
:func:`speaker_of` finds it. A sink takes mono signed 16-bit PCM at its own ``sample_rate`` in
:class:`~hardware.AudioChunk` form and plays it in order, in real time: :meth:`AudioSink.play`
returns once the chunk is queued on the device, waiting while more than a short buffer is queued,
so a caller that feeds it as fast as it can still runs at the speaker's pace. Callers resample to
the sink's rate; a sink refuses any other rate with :class:`SpeakerError`.

Only one thing plays at a time: an owner talking, a quick reply or the chime each hold the
camera's :class:`SpeakerFloor` while they play, and whoever asks while it is held learns who holds
it. While the floor is held the microphone is *ducked* (``SpeakerFloor.ducked``), so the owner
does not hear their own voice come back from the doorbell.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from hardware._audio import AUDIO_RATE, AudioChunk
from hardware.errors import HardwareError

__all__ = [
    "AudioSink",
    "FloorTaken",
    "Played",
    "SimulatedSpeaker",
    "SpeakerError",
    "SpeakerFloor",
    "WavSink",
    "peak_frequency",
    "speaker_of",
]

SPEAKER_BUFFER_S = 0.06  # how far ahead of the playhead a sink lets callers queue sound


class SpeakerError(HardwareError):
    """A speaker cannot take what it was given (rate, shape), or cannot be opened."""


class FloorTaken(Exception):
    """The speaker is playing for someone else; ``holder`` says who (safe to show an owner)."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"the speaker is in use by {holder}; try again when they finish")
        self.holder = holder


@runtime_checkable
class AudioSink(Protocol):
    """A speaker: plays mono int16 chunks at ``sample_rate`` in order, paced in real time."""

    sample_rate: int

    async def play(self, chunk: AudioChunk) -> None: ...

    async def close(self) -> None: ...


def speaker_of(camera: Any) -> AudioSink | None:
    """The camera's speaker, or None when it has none."""
    speaker = getattr(camera, "speaker", None)
    return speaker if isinstance(speaker, AudioSink) else None


class SpeakerFloor:
    """Who may play on one camera's speaker now: one holder at a time, and the duck flag."""

    def __init__(self) -> None:
        self._holder: str | None = None

    @property
    def holder(self) -> str | None:
        """Who plays now (for instance ``owner 3f2a…`` or ``quick reply 'away'``), or None."""
        return self._holder

    @property
    def ducked(self) -> bool:
        """Whether the microphone should be muted because the speaker is in use."""
        return self._holder is not None

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        """Hold the floor for the ``with`` block; raises :class:`FloorTaken` if someone has it."""
        if not holder:
            raise ValueError("holder must name who plays")
        if self._holder is not None:
            raise FloorTaken(self._holder)
        self._holder = holder
        try:
            yield
        finally:
            self._holder = None


class _Pacer:
    """The playhead of a sink that plays in real time: when each chunk starts, and how long to
    wait so that no more than ``buffer_s`` is queued ahead of now."""

    def __init__(self, sample_rate: int, buffer_s: float) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if buffer_s < 0:
            raise ValueError(f"buffer_s must be >= 0, got {buffer_s}")
        self.sample_rate = sample_rate
        self._buffer_s = buffer_s
        self._playhead = 0.0  # time.monotonic() at which the queued sound runs out

    def check(self, chunk: AudioChunk) -> None:
        if chunk.sample_rate != self.sample_rate:
            raise SpeakerError(
                f"this speaker plays {self.sample_rate} Hz, got a chunk at {chunk.sample_rate} Hz; "
                "resample before playing"
            )

    def queue(self, chunk: AudioChunk) -> tuple[float, float]:
        """Queue ``chunk``: (when it starts playing, how long the caller should wait now)."""
        now = time.monotonic()
        start = max(now, self._playhead)
        self._playhead = start + len(chunk.samples) / self.sample_rate
        return start, max(0.0, self._playhead - now - self._buffer_s)


@dataclass(frozen=True, slots=True)
class Played:
    """One chunk a simulated speaker played: from ``at`` (``time.monotonic()``) on."""

    at: float
    samples: npt.NDArray[np.int16] = field(repr=False)


class SimulatedSpeaker:
    """A speaker that plays into memory, keeping each chunk with the moment it started playing,
    so tests and the harness can check what was heard and when."""

    def __init__(
        self, sample_rate: int = AUDIO_RATE, *, buffer_s: float = SPEAKER_BUFFER_S
    ) -> None:
        self.sample_rate = sample_rate
        self.played: list[Played] = []
        self.closed = False
        self._pacer = _Pacer(sample_rate, buffer_s)

    def __repr__(self) -> str:
        return f"SimulatedSpeaker({self.sample_rate} Hz, {len(self.played)} chunks played)"

    async def play(self, chunk: AudioChunk) -> None:
        if self.closed:
            raise SpeakerError("the speaker is closed")
        self._pacer.check(chunk)
        start, wait = self._pacer.queue(chunk)
        self.played.append(Played(start, chunk.samples.copy()))
        if wait > 0:
            await asyncio.sleep(wait)

    async def close(self) -> None:
        self.closed = True

    def samples(self, since: float = 0.0) -> npt.NDArray[np.int16]:
        """Everything played from chunks that started at or after ``since``, end to end."""
        parts = [p.samples for p in self.played if p.at >= since]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def first_sound(self, since: float = 0.0, *, level: int = 1000) -> float | None:
        """When the first sample louder than ``level`` played (monotonic seconds), or None."""
        for part in self.played:
            if part.at < since:
                continue
            loud = np.flatnonzero(np.abs(part.samples.astype(np.int32)) > level)
            if loud.size:
                return part.at + float(loud[0]) / self.sample_rate
        return None

    def peak_hz(self, since: float = 0.0) -> float | None:
        """The strongest frequency in what played since ``since``, or None when nothing did."""
        return peak_frequency(self.samples(since), self.sample_rate)


def peak_frequency(samples: npt.NDArray[np.int16], sample_rate: int) -> float | None:
    """The frequency (Hz) of the largest FFT bin of ``samples`` (DC excluded), or None if silent."""
    if samples.size < 2 or not np.any(samples):
        return None
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * sample_rate / samples.size


class WavSink:
    """A speaker that plays into a WAV file (mono, 16-bit), paced in real time unless
    ``realtime=False``; the file is complete once :meth:`close` returns."""

    def __init__(
        self,
        path: Path,
        sample_rate: int = AUDIO_RATE,
        *,
        realtime: bool = True,
        buffer_s: float = SPEAKER_BUFFER_S,
    ) -> None:
        self.sample_rate = sample_rate
        self.path = path
        self._realtime = realtime
        self._pacer = _Pacer(sample_rate, buffer_s)
        try:
            handle = path.open("wb")
        except OSError as exc:
            raise SpeakerError(
                f"cannot open {path.name!r} to write sound: {exc.strerror}; "
                "check the folder exists and is writable"
            ) from exc
        self._file: wave.Wave_write | None = wave.open(handle, "wb")  # noqa: SIM115 (close())
        self._handle = handle
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(sample_rate)

    def __repr__(self) -> str:
        return f"WavSink({self.path.name!r}, {self.sample_rate} Hz)"

    async def play(self, chunk: AudioChunk) -> None:
        if self._file is None:
            raise SpeakerError("the speaker is closed")
        self._pacer.check(chunk)
        self._file.writeframes(chunk.samples.astype("<i2").tobytes())
        _, wait = self._pacer.queue(chunk)
        if self._realtime and wait > 0:
            await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._handle.close()
            self._file = None
