"""Sound files for the chime and quick-reply tests: tones as WAV (any rate, channels and sample
format) and as Ogg Opus, written by the standard library and PyAV."""

from __future__ import annotations

import io
import wave
from typing import Any

import av
import numpy as np
import numpy.typing as npt


def sine(hz: float, seconds: float, rate: int, *, level: float = 0.3) -> npt.NDArray[np.int16]:
    """A sine tone of ``hz`` as int16 samples at ``rate``."""
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype(np.int16)


def wav_tone(hz: float, seconds: float, *, rate: int = 48_000, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV file of a ``hz`` tone on every one of ``channels`` channels."""
    mono = sine(hz, seconds, rate)
    frames = np.repeat(mono[:, None], channels, axis=1).reshape(-1)
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames.astype("<i2").tobytes())
    return out.getvalue()


def opus_tone(hz: float, seconds: float, *, channels: int = 1) -> bytes:
    """An Ogg Opus file (48 kHz) of a ``hz`` tone."""
    rate = 48_000
    layout = "mono" if channels == 1 else "stereo"
    mono = sine(hz, seconds, rate)
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream: Any = container.add_stream("libopus", rate=rate, layout=layout)
        step = 960
        for start in range(0, mono.size, step):
            part = mono[start : start + step]
            if part.size < step:
                part = np.pad(part, (0, step - part.size))
            planes = np.repeat(part[None, :], channels, axis=0).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(planes, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def encoded_tone(hz: float, seconds: float, *, container: str, codec: str) -> bytes:
    """A ``hz`` tone encoded with ``codec`` (PyAV's encoder name) in ``container``."""
    rate = 48_000
    mono = sine(hz, seconds, rate)
    out = io.BytesIO()
    with av.open(out, "w", format=container) as file:
        stream: Any = file.add_stream(codec, rate=rate, layout="mono")
        sample_format = stream.codec_context.format.name
        step = stream.codec_context.frame_size or 1024
        for start in range(0, mono.size, step):
            part = mono[start : start + step]
            values = part if sample_format.startswith("s16") else part.astype(np.float32) / 32768
            frame = av.AudioFrame.from_ndarray(values[None, :], format=sample_format, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                file.mux(packet)
        for packet in stream.encode(None):
            file.mux(packet)
    return out.getvalue()
