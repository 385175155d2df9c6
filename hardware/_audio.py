"""Sound from a camera's microphone: the chunk type, the protocol a microphone implements, and a
file or network camera's sound track.

A camera with a microphone exposes it as its ``microphone`` attribute (an :class:`AudioSource`);
:func:`microphone_of` finds it. Chunks are stamped on the camera's own clock (``pts_s``: seconds
since the camera started, like ``Frame.pts_s``), so sound and pictures line up.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "AUDIO_CHUNK_S",
    "AUDIO_RATE",
    "AudioChunk",
    "AudioSource",
    "Listening",
    "StreamMicrophone",
    "microphone_of",
]

AUDIO_RATE = 48_000  # samples a second (what Opus and WebRTC use)
AUDIO_CHUNK_S = 0.02  # 20 ms chunks: one Opus frame each


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono signed 16-bit PCM captured from ``pts_s`` on (seconds on the camera's clock)."""

    pts_s: float
    samples: npt.NDArray[np.int16] = field(repr=False)
    sample_rate: int = AUDIO_RATE

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.int16:
            raise ValueError(
                f"samples must be one channel of int16, got {self.samples.dtype} "
                f"with shape {self.samples.shape}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")


@runtime_checkable
class AudioSource(Protocol):
    """A microphone: chunks in capture order from now on; cancelling the iteration stops it."""

    def audio(self) -> AsyncIterator[AudioChunk]: ...


def microphone_of(camera: Any) -> AudioSource | None:
    """The camera's microphone, or None when it has none."""
    microphone = getattr(camera, "microphone", None)
    return microphone if isinstance(microphone, AudioSource) else None


MAX_QUEUED_CHUNKS = 25  # half a second; a listener further behind loses its oldest chunks


class StreamMicrophone:
    """The sound track of a file or network camera: its reader (on the camera's worker thread)
    decodes the audio stream only while someone listens (``listening``) and hands each chunk to
    :meth:`feed`; each listener gets every chunk from the moment it joins.

    A listener that falls behind loses its oldest chunks, never holding up the reader.
    """

    def __init__(self) -> None:
        self.captured = 0  # chunks fed, over every listener
        self._listeners: list[Listening] = []

    @property
    def listening(self) -> bool:
        """Whether anyone listens (read from the reader's thread: a plain attribute read)."""
        return bool(self._listeners)

    def feed(self, chunk: AudioChunk) -> None:
        """Hand one chunk to every listener; callable from any thread."""
        self.captured += 1
        for listener in list(self._listeners):
            listener.loop.call_soon_threadsafe(listener.put, chunk)

    def listen(self, *, max_queued: int = MAX_QUEUED_CHUNKS) -> Listening:
        """Start listening now (on the event loop); ``close()`` the result to stop."""
        listener = Listening(self, asyncio.get_running_loop(), max_queued)
        self._listeners.append(listener)
        return listener

    async def audio(self) -> AsyncIterator[AudioChunk]:
        listener = self.listen()
        try:
            while True:
                yield await listener.get()
        finally:
            listener.close()

    def _remove(self, listener: Listening) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


class Listening:
    """One listener of a :class:`StreamMicrophone`: a bounded queue on its event loop."""

    def __init__(
        self, microphone: StreamMicrophone, loop: asyncio.AbstractEventLoop, max_queued: int
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self.loop = loop
        self.skipped = 0  # chunks lost because this listener fell behind
        self._microphone = microphone
        self._max_queued = max_queued
        self._chunks: collections.deque[AudioChunk] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, chunk: AudioChunk) -> None:
        if len(self._chunks) >= self._max_queued:
            self._chunks.popleft()
            self.skipped += 1
        self._chunks.append(chunk)
        self._ready.set()

    def drain(self) -> list[AudioChunk]:
        """The chunks waiting now, oldest first (no waiting)."""
        chunks = list(self._chunks)
        self._chunks.clear()
        return chunks

    async def get(self) -> AudioChunk:
        while not self._chunks:
            self._ready.clear()
            await self._ready.wait()
        return self._chunks.popleft()

    def close(self) -> None:
        self._microphone._remove(self)
