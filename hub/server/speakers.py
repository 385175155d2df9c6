"""The doorbell's speakers, one per camera at most, and who plays on each.

:class:`Speakers` sits on the API app (``hub.server.appkeys.SPEAKERS``). Everything that makes
the doorbell speak (an owner talking back, the chime, a quick reply) goes through
:meth:`Speakers.play`: it takes the camera's :class:`~hardware.SpeakerFloor` for the whole
playback (a second caller gets :class:`~hardware.FloorTaken`, naming the holder), resamples to
the speaker's rate and plays in real time. While the floor is held the camera's microphone is
ducked for live viewers (``hub.server.live.audio``).

:func:`open_speakers` opens the configured speakers (``[speakers]`` in the config); one that
cannot be opened is logged once and left out: the camera records and streams regardless.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from typing import Any

import av
import numpy as np

from hardware import (
    AudioChunk,
    AudioSink,
    FloorTaken,
    HardwareError,
    SimulatedSpeaker,
    SpeakerFloor,
    open_speaker,
)
from hub.server.config import CameraConfig, ServeConfig, speaker_for
from hub.wire.errors import Conflict, NotFound

__all__ = ["NoSpeaker", "SpeakerBusy", "SpeakerClaim", "Speakers", "open_speakers"]

logger = logging.getLogger(__name__)


class NoSpeaker(Conflict):
    """The camera has no speaker to play on (none configured, or it failed to open)."""

    code = "no_speaker"


class SpeakerBusy(Conflict, FloorTaken):
    """Someone else plays on the camera's speaker; ``holder`` says who (an API 409, and a
    :class:`~hardware.FloorTaken` for code that catches that)."""

    code = "speaker_busy"

    def __init__(self, holder: str) -> None:
        FloorTaken.__init__(self, holder)


class SpeakerClaim:
    """The floor of one camera's speaker, held by ``holder`` until :meth:`release` (which may be
    called more than once); :meth:`Speakers.play` with the same holder plays under it."""

    def __init__(self, camera: str, holder: str, floor: SpeakerFloor) -> None:
        self.camera = camera
        self.holder = holder
        self._held: ExitStack | None = ExitStack()
        self._held.enter_context(floor.hold(holder))

    def __repr__(self) -> str:
        state = "held" if self._held is not None else "released"
        return f"SpeakerClaim({self.camera!r}, {self.holder!r}, {state})"

    @property
    def held(self) -> bool:
        """Whether the floor is still held."""
        return self._held is not None

    def release(self) -> None:
        """Give the floor back."""
        held, self._held = self._held, None
        if held is not None:
            held.close()


class Speakers:
    """Each camera's speaker (or None) and its floor; call everything on the event loop."""

    def __init__(self, sinks: Mapping[str, AudioSink | None] | None = None) -> None:
        """``sinks``: camera name → its speaker, None for a camera without one. The registry
        owns the speakers: :meth:`close` closes them."""
        self._sinks: dict[str, AudioSink | None] = dict(sinks or {})
        self._floors = {camera: SpeakerFloor() for camera in self._sinks}

    def __repr__(self) -> str:
        playing = {c: s for c, s in self._sinks.items() if s is not None}
        return f"Speakers({playing!r})"

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras this registry knows (with or without a speaker)."""
        return tuple(self._sinks)

    def sink(self, camera: str) -> AudioSink | None:
        """The camera's speaker, or None when it has none (or is unknown)."""
        return self._sinks.get(camera)

    def floor(self, camera: str) -> SpeakerFloor:
        """Who plays on the camera's speaker now; a camera without a speaker has a floor too
        (never held), so its microphone is simply never ducked."""
        floor = self._floors.get(camera)
        if floor is None:
            raise NotFound(f"no camera named {camera[:64]!r}; GET /cameras lists them")
        return floor

    def simulated(self, camera: str) -> SimulatedSpeaker:
        """The camera's simulated speaker, for tests and the harness to read what it played;
        raises LookupError when the camera's speaker is not a simulated one."""
        sink = self._sinks.get(camera)
        if not isinstance(sink, SimulatedSpeaker):
            raise LookupError(f"camera {camera!r} has no simulated speaker (it has {sink!r})")
        return sink

    def claim(self, camera: str, holder: str) -> SpeakerClaim:
        """Hold the camera's floor as ``holder`` from now until the claim is released, to play
        later (an owner's talk holds it from the answer on); raises :class:`NoSpeaker` or
        :class:`SpeakerBusy`. Must run on the event loop (the check and the hold are one step)."""
        if self.sink(camera) is None:
            raise self._no_speaker(camera)
        floor = self.floor(camera)
        if floor.holder is not None:
            raise SpeakerBusy(floor.holder)
        return SpeakerClaim(camera, holder, floor)

    async def play(
        self,
        camera: str,
        chunks: AsyncIterable[AudioChunk] | Iterable[AudioChunk],
        holder: str,
    ) -> float:
        """Play ``chunks`` (mono int16 at any rate) on the camera's speaker, holding its floor
        as ``holder`` throughout (or under the caller's :class:`SpeakerClaim` by that holder,
        which stays held); returns the seconds played. Raises :class:`NoSpeaker` or
        :class:`SpeakerBusy` (a :class:`~hardware.FloorTaken`: someone else plays) before
        anything plays, and :class:`~hardware.SpeakerError` if the speaker fails."""
        sink = self.sink(camera)
        floor = self.floor(camera)
        if sink is None:
            raise self._no_speaker(camera)
        claimed = floor.holder == holder  # the caller's claim: play under it, keep it held
        if floor.holder is not None and not claimed:
            raise SpeakerBusy(floor.holder)
        played = 0
        with nullcontext() if claimed else floor.hold(holder):
            logger.info("speaker.playing camera=%s holder=%s", camera, holder)
            resampler = _Resampler(sink.sample_rate)
            try:
                async for chunk in _each(chunks):
                    for out in resampler.push(chunk):
                        await sink.play(out)
                        played += out.samples.shape[0]
                for out in resampler.flush():
                    await sink.play(out)
                    played += out.samples.shape[0]
            finally:
                logger.info(
                    "speaker.stopped camera=%s holder=%s seconds=%.2f",
                    camera,
                    holder,
                    played / sink.sample_rate,
                )
        return played / sink.sample_rate

    @staticmethod
    def _no_speaker(camera: str) -> NoSpeaker:
        return NoSpeaker(
            f"camera {camera[:64]!r} has no speaker; name one under [speakers] in the "
            "config (sim, wav:PATH or alsa:DEVICE)"
        )

    async def close(self) -> None:
        """Close every speaker (once the device stops)."""
        for camera, sink in self._sinks.items():
            if sink is None:
                continue
            try:
                await sink.close()
            except HardwareError as exc:
                logger.error("speaker.close_failed camera=%s error=%s", camera, exc)


def open_speakers(
    config: ServeConfig, cameras: Sequence[CameraConfig], sources: Mapping[str, Any]
) -> Speakers:
    """The configured speaker of each camera (blocking: run it in a worker thread); a speaker
    that cannot be opened is logged once and left out."""
    sinks: dict[str, AudioSink | None] = {}
    for camera in cameras:
        spec = speaker_for(config, camera)
        try:
            sinks[camera.name] = open_speaker(
                spec.kind, spec.target, camera=sources.get(camera.name)
            )
        except HardwareError as exc:
            logger.error("speaker.off camera=%s speaker=%s error=%s", camera.name, spec, exc)
            sinks[camera.name] = None
        else:
            if sinks[camera.name] is not None:
                logger.info("speaker.ready camera=%s speaker=%s", camera.name, spec.kind)
    return Speakers(sinks)


async def _each(
    chunks: AsyncIterable[AudioChunk] | Iterable[AudioChunk],
) -> AsyncIterator[AudioChunk]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


class _Resampler:
    """Chunks at any rate in, chunks at ``rate`` out (libswresample through PyAV); chunks
    already at ``rate`` pass untouched."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._from: int | None = None
        self._resampler: av.AudioResampler | None = None
        self._out_s = 0.0  # where the next resampled chunk starts

    def push(self, chunk: AudioChunk) -> list[AudioChunk]:
        if chunk.sample_rate == self.rate and self._resampler is None:
            return [chunk]
        out = []
        if chunk.sample_rate != self._from:  # a new input rate: drain the old setup first
            out.extend(self.flush())
            self._from = chunk.sample_rate
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        assert self._resampler is not None
        frame = av.AudioFrame.from_ndarray(
            chunk.samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = chunk.sample_rate
        out.extend(self._chunks(self._resampler.resample(frame)))
        return out

    def flush(self) -> list[AudioChunk]:
        if self._resampler is None:
            return []
        out = self._chunks(self._resampler.resample(None))
        self._resampler, self._from = None, None
        return out

    def _chunks(self, frames: list[av.AudioFrame]) -> list[AudioChunk]:
        out = []
        for frame in frames:
            samples = np.ascontiguousarray(frame.to_ndarray().reshape(-1), dtype=np.int16)
            if samples.size:
                out.append(AudioChunk(self._out_s, samples, self.rate))
                self._out_s += samples.size / self.rate
        return out
