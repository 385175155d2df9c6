"""A camera's sound for live listeners: captured once and encoded to Opus once, whoever listens.

The microphone (``hardware.AudioSource``) is read only while someone listens, by one task per
camera, and each 20 ms chunk is encoded once by one libopus encoder; every listener gets the same
Opus packets, which aiortc's sender packetizes without encoding again. An Opus frame of 20 ms of
mono costs tens of microseconds to encode, so it is done on the event loop rather than handed to
a thread. Each listener has a short queue (every Opus packet stands alone): one that stalls loses
its queue, so it only skips sound; the capture never waits for it.

While the camera's speaker plays (its :class:`~hardware.SpeakerFloor` is held: an owner talks,
the chime rings, a quick reply plays) the microphone is *ducked*: each chunk is replaced by
silence before it is encoded, so listeners keep an unbroken stream and the talker does not hear
their own voice come back from the doorbell.
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

import av
import numpy as np

from hardware import AUDIO_RATE, AudioChunk, AudioSource, SpeakerFloor
from hub.server.live.feed import LivePacket, PacketViewer

__all__ = ["AUDIO_TIME_BASE", "AudioFeed"]

logger = logging.getLogger(__name__)

AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)  # the Opus RTP clock is always 48 kHz (RFC 7587 §4.1)
MAX_QUEUED_AUDIO = 25  # half a second of 20 ms packets; past this a listener has stalled
OPUS_BIT_RATE = 32_000  # mono speech at a door: clear at 32 kb/s


class AudioFeed:
    """One camera's microphone as Opus for every listener, silenced while ``floor`` (the
    camera's speaker) is held."""

    def __init__(
        self, camera: str, source: AudioSource, *, floor: SpeakerFloor | None = None
    ) -> None:
        self.camera = camera
        self.chunks_in = 0  # chunks captured (once, however many listen)
        self.encoded_chunks = 0
        self.ducked_chunks = 0  # chunks sent as silence because the speaker was playing
        self._floor = floor
        self._source = source
        self._viewers: list[PacketViewer] = []
        self._capture: asyncio.Task[None] | None = None

    @property
    def viewer_count(self) -> int:
        """How many listeners this microphone has now."""
        return len(self._viewers)

    def subscribe(self) -> PacketViewer:
        """A new listener; the first one starts the capture (call on the event loop)."""
        viewer = PacketViewer(self, max_queued=MAX_QUEUED_AUDIO)
        self._viewers.append(viewer)
        if self._capture is None:
            self._capture = asyncio.ensure_future(self._run())
        return viewer

    def remove(self, viewer: PacketViewer) -> None:
        """Forget a listener; the last one to go stops the capture."""
        if viewer in self._viewers:
            self._viewers.remove(viewer)
        if not self._viewers and self._capture is not None:
            self._capture.cancel()
            self._capture = None

    def request_keyframe(self) -> None:
        """Every Opus packet can be decoded on its own: nothing to ask for."""

    async def _run(self) -> None:
        encoder = _OpusEncoder()
        try:
            async for captured in self._source.audio():
                self.chunks_in += 1
                chunk = captured
                if self._floor is not None and self._floor.ducked:
                    self.ducked_chunks += 1
                    chunk = AudioChunk(
                        captured.pts_s, np.zeros_like(captured.samples), captured.sample_rate
                    )
                packets = encoder.encode(chunk)
                self.encoded_chunks += 1
                for packet in packets:
                    for viewer in list(self._viewers):
                        viewer.offer(packet)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a microphone that fails ends the sound, not the session
            logger.error("live.audio_failed camera=%s error=%s", self.camera, exc)


class _OpusEncoder:
    """libopus, mono, 20 ms frames, tuned for speech; packets stamped by the chunks' capture
    time on the 48 kHz clock."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = AUDIO_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = OPUS_BIT_RATE
        ctx.time_base = AUDIO_TIME_BASE
        ctx.options = {"application": "voip", "frame_duration": "20"}
        ctx.open()
        self._ctx = ctx
        self._next_pts = 0

    def encode(self, chunk: AudioChunk) -> list[LivePacket]:
        frame = av.AudioFrame.from_ndarray(
            chunk.samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = chunk.sample_rate
        pts = max(round(chunk.pts_s / AUDIO_TIME_BASE), self._next_pts)
        frame.pts = pts
        frame.time_base = AUDIO_TIME_BASE
        packets = []
        for packet in self._ctx.encode(frame):
            packets.append(LivePacket(bytes(packet), pts, True))
            pts += chunk.samples.shape[0]
        self._next_pts = pts
        return packets
