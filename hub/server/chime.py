"""The chime: what the doorbell's own speaker plays when its button is pressed.

The sound is the file named by the ``chime`` option (WAV or Ogg Opus, at most
:data:`MAX_CHIME_S`), or, by default, a two-tone "ding-dong" synthesised at startup
(:func:`default_chime`); ``chime = "off"`` plays nothing. :class:`Chimes` rings it on the
pressed camera's speaker, holding that speaker's floor while it plays.

When the floor is already held (an owner talking to the visitor, a quick reply, or the chime of
the previous press) the chime is skipped and logged, never queued: the person at the door has
just been heard by an owner who is speaking to them, and a chime cutting in or ringing after the
conversation would only confuse. The owners' phones are told of the press all the same
(``doorbell.pressed`` is emitted by the recording pipeline, whatever the speaker does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from crypto.errors import DoorwardError
from hardware import AUDIO_RATE, AudioChunk, AudioSink, FloorTaken, SpeakerFloor
from hub.server.sound import Sound, SoundError, decode_sound

__all__ = [
    "CHIME_HOLDER",
    "CHIME_OFF",
    "DING_HZ",
    "DONG_HZ",
    "MAX_CHIME_BYTES",
    "MAX_CHIME_S",
    "Chimes",
    "SpeakerRoom",
    "default_chime",
    "load_chime",
]

logger = logging.getLogger(__name__)

CHIME_HOLDER = "the doorbell chime"  # who holds a speaker's floor while the chime plays
CHIME_OFF = "off"  # the ``chime`` option's value that silences the chime
MAX_CHIME_S = 10.0  # a chime is a signal, not a song
MAX_CHIME_BYTES = 16 * 1024 * 1024  # a 10 s 48 kHz 8-channel 32-bit WAV still fits
DING_HZ = 659.25  # E5
DONG_HZ = 523.25  # C5: a falling major third, the classic two-tone door chime
_DING_S, _DONG_S = 0.45, 0.9
_DECAY_S = 0.35  # each strike fades like a struck bar (amplitude e^-t/τ)
_ATTACK_S = 0.004  # a short ramp, so the strike does not click
_LEVEL = 0.6  # of full scale


class SpeakerRoom(Protocol):
    """The cameras' speakers as the chime uses them (``hub.server.speakers.Speakers``)."""

    def sink(self, camera: str) -> AudioSink | None:
        """The camera's speaker, or None."""
        ...

    def floor(self, camera: str) -> SpeakerFloor:
        """Who plays on the camera's speaker now."""
        ...

    async def play(self, camera: str, chunks: Iterable[AudioChunk], holder: str) -> float:
        """Play ``chunks`` holding the floor as ``holder``; FloorTaken if someone else has it."""
        ...


def default_chime(sample_rate: int = AUDIO_RATE) -> Sound:
    """The built-in chime: a struck E5 then a struck C5, 1.35 s in all (pure tones, so a
    speaker's recording shows their frequencies plainly)."""
    parts = [_strike(DING_HZ, _DING_S, sample_rate), _strike(DONG_HZ, _DONG_S, sample_rate)]
    samples = np.concatenate(parts)
    return Sound(samples, sample_rate, "wav", "pcm_s16le", sample_rate, 1)


def load_chime(path: Path) -> Sound:
    """The chime file at ``path``, checked and decoded; SoundError says what is wrong with it
    (OSError if it cannot be read). Blocking."""
    size = path.stat().st_size
    if size > MAX_CHIME_BYTES:
        raise SoundError(
            f"the chime file {path.name!r} is {size} bytes; the limit is {MAX_CHIME_BYTES}: "
            f"use a shorter sound (at most {MAX_CHIME_S:g} s) or Ogg Opus"
        )
    return decode_sound(path.read_bytes(), max_s=MAX_CHIME_S, what=f"the chime file {path.name!r}")


class Chimes:
    """Rings the chime on a pressed camera's speaker, at most one chime per camera at a time;
    :meth:`ring` never waits and never raises, so a press is never held up by its sound."""

    def __init__(self, sound: Sound, speakers: SpeakerRoom) -> None:
        self.sound = sound
        self.rung = 0  # chimes that played to the end
        self.skipped = 0  # presses that found the floor held
        self.failed = 0  # chimes the speaker could not play
        self._speakers = speakers
        self._playing: dict[str, asyncio.Task[None]] = {}

    def ring(self, camera: str) -> bool:
        """Start the chime on ``camera``'s speaker; False when the camera has no speaker or
        the chime is skipped because the floor is held. Call on the event loop."""
        if self._speakers.sink(camera) is None:
            return False
        holder = self._speakers.floor(camera).holder
        if holder is not None or camera in self._playing:
            self._skip(camera, holder or CHIME_HOLDER)
            return False
        task = asyncio.ensure_future(self._run(camera))
        self._playing[camera] = task
        task.add_done_callback(lambda _: self._playing.pop(camera, None))
        return True

    async def wait(self, camera: str) -> None:
        """Return once no chime plays on ``camera`` (tests, shutdown)."""
        task = self._playing.get(camera)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop every chime playing now."""
        tasks = list(self._playing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, camera: str) -> None:
        try:
            await self._speakers.play(camera, self.sound.chunks(), CHIME_HOLDER)
        except FloorTaken as exc:  # taken between the check and the start
            self._skip(camera, exc.holder)
        except DoorwardError as exc:  # the speaker failed: the press still went to the phones
            self.failed += 1
            logger.warning(
                "chime.failed camera=%s error=%s detail=%s", camera, type(exc).__name__, exc
            )
        else:
            self.rung += 1
            logger.debug("chime.rung camera=%s", camera)

    def _skip(self, camera: str, holder: str) -> None:
        self.skipped += 1
        logger.info("chime.skipped camera=%s holder=%s", camera, holder)


def _strike(frequency_hz: float, seconds: float, sample_rate: int) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    envelope = np.exp(-t / _DECAY_S) * np.minimum(1.0, t / _ATTACK_S)
    tone = np.sin(2 * np.pi * frequency_hz * t) * envelope * _LEVEL * 32767
    strike: npt.NDArray[np.int16] = tone.astype(np.int16)
    return strike
