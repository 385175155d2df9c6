"""Talk timing for ``bench/live.py``: a microphone that speaks in tone bursts, and the onsets of
those bursts on both sides.

The owner's side sends :class:`BurstTone`: 20 ms frames at 48 kHz, paced in real time, silent
except for a burst of ``hz`` every ``period_s`` starting on a frame boundary. It notes the
``time.monotonic()`` at which it hands out each burst's first frame: the moment the tone starts
for the phone (what a real microphone would deliver at that instant). The device's
:class:`~hardware.SimulatedSpeaker` stamps each chunk with the monotonic time it starts playing;
:func:`speaker_onsets` finds where each burst begins there. Both processes run on one machine,
and ``time.monotonic()`` is the system-wide ``CLOCK_MONOTONIC`` on Linux, so the two sides'
stamps compare directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from hub.wire.webrtc import peer_connection

__all__ = ["BurstTone", "match_onsets", "speaker_onsets", "talking_session"]

RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, one Opus frame
LOUD = 1000  # an int16 sample above this is sound (the bursts peak at 12,000)


class BurstTone(MediaStreamTrack):
    """An audio track: silence with a ``burst_s`` tone of ``hz`` every ``period_s``;
    ``onsets`` collects when each burst's first frame was handed out (monotonic seconds).

    :meth:`pause` stops the frames (the sender then sends nothing, as a page does when its talk
    button is let go) and :meth:`resume` starts them again with a burst."""

    kind = "audio"

    def __init__(self, *, hz: float = 1000.0, burst_s: float = 0.2, period_s: float = 0.5) -> None:
        super().__init__()
        self.onsets: list[float] = []
        self.period_s = period_s
        self._period = round(period_s * RATE / FRAME_SAMPLES)  # in frames
        self._burst = max(1, round(burst_s * RATE / FRAME_SAMPLES))
        t = np.arange(self._burst * FRAME_SAMPLES) / RATE
        self._tone = (12_000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        self._index = 0  # frames handed out
        self._first = 0  # the frame the current run of talk started with
        self._start: float | None = None  # when frame 0 was due, moved on at each resume
        self._talking = asyncio.Event()
        self._talking.set()

    def pause(self) -> None:
        """Hand out no frames until :meth:`resume`."""
        self._talking.clear()

    def resume(self) -> None:
        """Start talking again now, with a burst."""
        if not self._talking.is_set():
            self._start = None
            self._first = self._index
            self._talking.set()

    async def recv(self) -> av.AudioFrame:
        await self._talking.wait()
        if self._start is None:
            self._start = time.monotonic() - self._index * FRAME_SAMPLES / RATE
        due = self._start + self._index * FRAME_SAMPLES / RATE
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        phase = (self._index - self._first) % self._period
        if phase < self._burst:
            if phase == 0:
                self.onsets.append(time.monotonic())
            samples = self._tone[phase * FRAME_SAMPLES : (phase + 1) * FRAME_SAMPLES]
        else:
            samples = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._index * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        self._index += 1
        return frame


def speaker_onsets(
    played: Iterable[tuple[float, Any]], sample_rate: int, *, gap_s: float = 0.1
) -> list[float]:
    """When each burst started on the speaker: the first loud sample after at least ``gap_s``
    of quiet, from a speaker's ``(start, samples)`` chunks in playing order."""
    onsets: list[float] = []
    last_loud = float("-inf")
    for start, samples in played:
        loud = np.flatnonzero(np.abs(np.asarray(samples, dtype=np.int32)) > LOUD)
        if not loud.size:
            continue
        times = start + loud / sample_rate
        gaps = np.diff(np.concatenate([[last_loud], times]))
        onsets.extend(float(t) for t in times[gaps >= gap_s])
        last_loud = float(times[-1])
    return onsets


def match_onsets(sent: Sequence[float], heard: Sequence[float], *, within_s: float) -> list[float]:
    """Latency (seconds) of each sent burst: to the first heard onset after it, if one comes
    within ``within_s`` (a lost burst is left out)."""
    latencies = []
    heard_sorted = sorted(heard)
    for at in sent:
        index = int(np.searchsorted(heard_sorted, at))
        if index < len(heard_sorted) and heard_sorted[index] - at <= within_s:
            latencies.append(heard_sorted[index] - at)
    return latencies


@contextlib.asynccontextmanager
async def talking_session(
    post_offer: Callable[[str], Awaitable[str]], tone: BurstTone, *, timeout_s: float = 30.0
) -> AsyncIterator[None]:
    """An owner's live session that watches (video, drained) and talks with ``tone`` (Opus,
    sendrecv); entered once the first picture has arrived, hung up on exit."""
    peer = peer_connection()
    peer.addTransceiver("video", direction="recvonly")
    speaking = peer.addTransceiver(tone, direction="sendrecv")
    speaking.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
    )
    pictured = asyncio.Event()
    drains: list[asyncio.Task[None]] = []

    async def drain(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()  # aiortc queues what is not taken
                if track.kind == "video":
                    pictured.set()

    peer.on("track", lambda track: drains.append(asyncio.ensure_future(drain(track))))
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await post_offer(peer.localDescription.sdp)
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(pictured.wait(), timeout_s)
        yield
    finally:
        await peer.close()
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
