"""The simulated camera's microphone: a steady tone, and a chime while the doorbell is pressed."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from hardware._audio import AUDIO_CHUNK_S, AUDIO_RATE, AudioChunk
from hardware._clock import Clock

__all__ = ["CHIME_HZ", "CHIME_S", "SimulatedMicrophone"]

_CHUNK_SAMPLES = round(AUDIO_RATE * AUDIO_CHUNK_S)
CHIME_HZ = 880.0  # mixed in while the doorbell is pressed
CHIME_S = 1.0  # how long a press chimes at least
_TONE_LEVEL = 0.3  # of full scale
_CHIME_LEVEL = 0.25


class SimulatedMicrophone:
    """A sine tone of ``tone_hz`` (and a chime while a press lasts), paced on the camera's clock.

    ``origin`` returns the camera's start on ``clock.monotonic()`` (starting it if need be). In
    real time a listener joins at the current chunk and each chunk is delivered once its 20 ms
    have passed; in virtual time chunks come from 0 as fast as they are taken. Either way the
    run ends with the camera's ``seconds``.
    """

    def __init__(
        self,
        *,
        tone_hz: float,
        seconds: float,
        presses: Sequence[tuple[float, float]],
        clock: Clock,
        origin: Callable[[], float],
        realtime: bool,
    ) -> None:
        self.tone_hz = tone_hz
        self.captured = 0  # chunks produced, over every listener
        self._seconds = seconds
        self._chimes = tuple((at_s, at_s + max(hold_s, CHIME_S)) for at_s, hold_s in presses)
        self._clock = clock
        self._origin = origin
        self._realtime = realtime
        self.closed = False

    async def audio(self) -> AsyncIterator[AudioChunk]:
        origin = self._origin()
        index = 0
        if self._realtime:
            index = max(0, math.floor((self._clock.monotonic() - origin) / AUDIO_CHUNK_S))
        while not self.closed and index * AUDIO_CHUNK_S < self._seconds:
            if self._realtime:
                wait_s = origin + (index + 1) * AUDIO_CHUNK_S - self._clock.monotonic()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
            self.captured += 1
            yield self.chunk(index)
            index += 1

    def chunk(self, index: int) -> AudioChunk:
        """Chunk ``index`` of the run (the same samples whenever it is asked for)."""
        pts_s = index * AUDIO_CHUNK_S
        t = (index * _CHUNK_SAMPLES + np.arange(_CHUNK_SAMPLES)) / AUDIO_RATE
        wave = _TONE_LEVEL * np.sin(2 * np.pi * self.tone_hz * t)
        if any(start <= pts_s < end for start, end in self._chimes):
            wave += _CHIME_LEVEL * np.sin(2 * np.pi * CHIME_HZ * t)
        return AudioChunk(pts_s, np.round(wave * 32767).astype(np.int16))

    def close(self) -> None:
        self.closed = True
