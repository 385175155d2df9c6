"""What an owner says into live view: a sound file or a generated tone, as 48 kHz mono PCM.

:class:`TalkSound` is checked and decoded before any call is made, so a file that is not audio
(or cannot be read) fails with :class:`TalkFileError` before the device is asked for anything.
``hub.client.live`` sends it as Opus in the live session (the device plays it on the doorbell's
speaker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from crypto.errors import DoorwardError

__all__ = ["MAX_TALK_FILE_S", "TALK_CHUNK_SAMPLES", "TALK_RATE", "TalkFileError", "TalkSound"]

TALK_RATE = 48_000  # what Opus carries (RFC 7587 §4.1)
TALK_CHUNK_SAMPLES = 960  # 20 ms: one Opus frame
MAX_TALK_FILE_S = 300.0  # a file longer than this is refused (it would sit in memory whole)
_TONE_LEVEL = 0.3  # of full scale


class TalkFileError(DoorwardError):
    """A sound file to talk with cannot be used: unreadable, not audio, empty or too long."""


@dataclass(frozen=True, slots=True)
class TalkSound:
    """Mono 16-bit sound at 48 kHz: a decoded file (``samples``) or an endless tone (``tone_hz``)."""

    samples: npt.NDArray[np.int16] | None = field(repr=False, default=None)
    tone_hz: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if (self.samples is None) == (self.tone_hz is None):
            raise ValueError("a TalkSound is either samples or a tone, not both or neither")
        if self.tone_hz is not None and not 20.0 <= self.tone_hz <= TALK_RATE / 2:
            raise ValueError(f"tone_hz must be between 20 and {TALK_RATE // 2}, got {self.tone_hz}")

    @classmethod
    def tone(cls, hz: float) -> TalkSound:
        """A sine tone of ``hz`` that plays until the session ends."""
        return cls(tone_hz=float(hz), name=f"a {hz:g} Hz tone")

    @classmethod
    def from_file(cls, path: Path, *, max_s: float = MAX_TALK_FILE_S) -> TalkSound:
        """Decode a sound file (WAV, or anything ffmpeg reads) to 48 kHz mono, whole; raises
        :class:`TalkFileError` saying what is wrong with it."""
        try:
            container = av.open(str(path))
        except FileNotFoundError as exc:
            raise TalkFileError(f"cannot read {path}: no such file") from exc
        except PermissionError as exc:
            raise TalkFileError(f"cannot read {path}: permission denied") from exc
        except IsADirectoryError as exc:
            raise TalkFileError(f"cannot read {path}: it is a folder, not a sound file") from exc
        except (OSError, av.FFmpegError) as exc:
            raise TalkFileError(
                f"{path} is not a sound file ffmpeg can read; give a WAV file (for instance "
                "16-bit PCM, any rate, mono or stereo)"
            ) from exc
        with container:
            if not container.streams.audio:
                raise TalkFileError(f"{path} holds no sound; give a WAV file with audio in it")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=TALK_RATE)
            parts: list[npt.NDArray[np.int16]] = []
            total = 0
            limit = round(max_s * TALK_RATE)
            try:
                for frame in container.decode(container.streams.audio[0]):
                    for out in resampler.resample(frame):
                        parts.append(out.to_ndarray().reshape(-1).astype(np.int16))
                        total += parts[-1].size
                    if total > limit:
                        raise TalkFileError(
                            f"{path} is longer than {max_s:g} s; cut it shorter to talk with it"
                        )
                for out in resampler.resample(None):
                    parts.append(out.to_ndarray().reshape(-1).astype(np.int16))
            except (OSError, av.FFmpegError, ValueError) as exc:
                raise TalkFileError(f"{path}: its sound cannot be decoded ({exc})") from exc
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        if samples.size == 0:
            raise TalkFileError(f"{path} holds no sound (zero samples); give a longer WAV file")
        return cls(samples=samples, name=path.name)

    @property
    def seconds(self) -> float:
        """How long it plays (``inf`` for a tone)."""
        return math.inf if self.samples is None else self.samples.size / TALK_RATE

    def chunk(self, index: int) -> npt.NDArray[np.int16] | None:
        """The ``index``-th 20 ms of the sound (the last one padded with silence), or None past
        its end."""
        start = index * TALK_CHUNK_SAMPLES
        if self.samples is None:
            assert self.tone_hz is not None
            t = (start + np.arange(TALK_CHUNK_SAMPLES)) / TALK_RATE
            wave = _TONE_LEVEL * np.sin(2 * np.pi * self.tone_hz * t)
            return np.round(wave * 32767).astype(np.int16)
        if start >= self.samples.size:
            return None
        part = self.samples[start : start + TALK_CHUNK_SAMPLES]
        if part.size < TALK_CHUNK_SAMPLES:
            part = np.concatenate([part, np.zeros(TALK_CHUNK_SAMPLES - part.size, np.int16)])
        return part
