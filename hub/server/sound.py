"""Sound files the doorbell plays (a quick reply an owner uploads, the configured chime): checked
and decoded once into what a speaker takes, mono signed 16-bit PCM at ``hardware.AUDIO_RATE``.

Two kinds of file are taken: WAV (PCM) and Ogg Opus. The container is recognised from its first
bytes and FFmpeg is told which demuxer to use, so it never probes other formats (some of which
reference other files or URLs). Any sample rate from 8 kHz to 192 kHz and up to 8 channels is
resampled and mixed down to one channel; decoding stops as soon as the sound runs past its
limit, so a small file that would decode to hours of audio costs no more than the limit.
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt

from crypto.errors import DoorwardError
from hardware import AUDIO_RATE, AudioChunk

__all__ = [
    "CHUNK_S",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Sound",
    "SoundError",
    "SoundTooLong",
    "decode_sound",
    "wav_bytes",
]

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 8_000  # Hz: telephone quality; below that a file is broken, not just cheap
MAX_SAMPLE_RATE = 192_000  # Hz: the highest rate studio gear writes
MAX_CHANNELS = 8  # 7.1 at most; mixed down to mono
_WAV_CODECS = frozenset(
    {"pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_alaw"}
    | {"pcm_mulaw"}
)
_OGG_CODECS = frozenset({"opus"})
_KINDS = "a WAV (PCM) or Ogg Opus file"
_NAMES = {"wav": "WAV", "ogg": "Ogg"}
_LABELS = {"wav": "a WAV", "ogg": "an Ogg"}
CHUNK_S = 0.02  # what a speaker is fed at a time: one Opus frame, as the microphone's chunks


class SoundError(DoorwardError):
    """A sound file is not one the doorbell can play: not WAV or Ogg Opus, not audio, damaged,
    or at a rate or with channels outside the supported range. Convert it (for instance
    ``ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg``) and try again."""

    status = 415
    code = "unsupported_audio"


class SoundTooLong(SoundError):
    """A sound file plays for longer than its limit: shorten it."""

    status = 400
    code = "audio_too_long"


@dataclass(frozen=True, slots=True)
class Sound:
    """A decoded sound: mono int16 ``samples`` at ``sample_rate``, and what the file held."""

    samples: npt.NDArray[np.int16] = field(repr=False)
    sample_rate: int = AUDIO_RATE
    source_format: str = "wav"  # wav or ogg
    source_codec: str = "pcm_s16le"
    source_rate: int = AUDIO_RATE
    source_channels: int = 1

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.int16:
            raise ValueError(
                f"samples must be one channel of int16, got {self.samples.dtype} "
                f"with shape {self.samples.shape}"
            )

    @property
    def duration_s(self) -> float:
        """How long the sound plays, in seconds."""
        return len(self.samples) / self.sample_rate

    def chunks(self, *, chunk_s: float = CHUNK_S) -> Iterator[AudioChunk]:
        """The sound as consecutive chunks of ``chunk_s`` (the last one shorter)."""
        step = max(1, round(self.sample_rate * chunk_s))
        for start in range(0, len(self.samples), step):
            yield AudioChunk(
                start / self.sample_rate, self.samples[start : start + step], self.sample_rate
            )


def decode_sound(data: bytes, *, max_s: float, what: str = "the sound") -> Sound:
    """Check and decode ``data`` (WAV or Ogg Opus) into mono int16 at ``AUDIO_RATE``; raises
    :class:`SoundError` (or :class:`SoundTooLong` past ``max_s`` seconds) naming ``what``.
    Blocking (tens of milliseconds for a few seconds of sound): run it in a worker thread."""
    kind = _sniff(data)
    if kind is None:
        raise SoundError(f"{what} is not {_KINDS} (its first bytes are neither RIFF/WAVE nor OggS)")
    try:
        with av.open(io.BytesIO(data), mode="r", format=kind) as container:
            return _decode(container, kind, max_s=max_s, what=what)
    except av.FFmpegError as exc:
        raise SoundError(f"{what} is not a readable {_NAMES[kind]} file: {_reason(exc)}") from None


def wav_bytes(samples: npt.NDArray[np.int16], sample_rate: int = AUDIO_RATE) -> bytes:
    """``samples`` (mono int16) as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(sample_rate)
        file.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def _sniff(data: bytes) -> str | None:
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    return None


def _decode(container: av.container.InputContainer, kind: str, *, max_s: float, what: str) -> Sound:
    streams = container.streams.audio
    if len(streams) != 1 or len(container.streams) != 1:
        raise SoundError(
            f"{what} must hold exactly one audio stream and nothing else, got "
            f"{len(streams)} audio of {len(container.streams)} streams"
        )
    stream = streams[0]
    context = stream.codec_context
    if context is None:  # a codec tag FFmpeg does not know
        raise SoundError(
            f"{what} is {_LABELS[kind]} file of sound in an unknown codec; convert it "
            "(ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)"
        )
    codec = context.name
    allowed = _WAV_CODECS if kind == "wav" else _OGG_CODECS
    if codec not in allowed:
        raise SoundError(
            f"{what} is {_LABELS[kind]} file of {codec} sound; the doorbell plays "
            f"{'PCM WAV' if kind == 'wav' else 'Opus in Ogg'}: convert it "
            "(ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)"
        )
    rate, channels = int(context.sample_rate or 0), int(context.channels or 0)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise SoundError(
            f"{what} has a sample rate of {rate} Hz; the doorbell resamples anything from "
            f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (48000 is best)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise SoundError(
            f"{what} has {channels} channels; the doorbell mixes 1 to {MAX_CHANNELS} "
            "channels down to one (mono is best)"
        )
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
    limit = int(max_s * AUDIO_RATE)
    parts: list[npt.NDArray[np.int16]] = []
    total = 0
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            total = _append(parts, out, total, limit, max_s, what)
    for out in resampler.resample(None):
        total = _append(parts, out, total, limit, max_s, what)
    if total == 0:
        raise SoundError(f"{what} holds no sound (an audio stream without samples)")
    samples = np.concatenate(parts)
    return Sound(samples, AUDIO_RATE, kind, codec, rate, channels)


def _append(
    parts: list[npt.NDArray[np.int16]],
    frame: av.AudioFrame,
    total: int,
    limit: int,
    max_s: float,
    what: str,
) -> int:
    samples = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
    total += len(samples)
    if total > limit:
        raise SoundTooLong(f"{what} plays for more than {max_s:g} s; the limit is {max_s:g} s")
    parts.append(samples)
    return total


def _reason(exc: av.FFmpegError) -> str:
    text = str(getattr(exc, "strerror", "") or exc)
    return text.splitlines()[0][:120] if text else type(exc).__name__
