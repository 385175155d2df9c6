"""Live view as an owner's phone receives it: an offer for video and sound, decoded frames, MP4;
and, to talk back, the owner's sound sent as Opus in the same session.

The device answers with one video codec (H.264 or VP8) and, when its camera has a microphone, Opus
(:mod:`hub.server.live.webrtc` is the other side). With ``talk`` the offer's audio section is
``sendrecv``: the device plays what arrives on the doorbell's speaker, and refuses the offer (409
``speaker_busy``, naming who) while someone else plays on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamError

from hub.client.talk import TALK_CHUNK_SAMPLES, TALK_RATE, TalkSound
from hub.wire.webrtc import peer_connection

__all__ = ["receive_live"]

logger = logging.getLogger(__name__)


async def receive_live(
    post_offer: Callable[[str], Awaitable[str]],
    *,
    on_frame: Callable[[av.VideoFrame], None] | None = None,
    on_audio: Callable[[av.AudioFrame], None] | None = None,
    seconds: float | None = None,
    out: Path | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = 20.0,
    codec: str | None = None,
    talk: TalkSound | None = None,
    on_talk_start: Callable[[float], None] | None = None,
) -> int:
    """Watch live view as an owner: send an offer through ``post_offer`` (which returns the
    answer SDP), then decode frames until ``seconds`` pass, ``stop`` is set or the device hangs
    up. The offer also asks for sound: when the device sends it, each decoded audio frame goes
    to ``on_audio``. ``out`` records what arrived, pictures and sound (MP4); ``codec`` (e.g.
    ``"video/VP8"``) limits what the offer accepts. ``talk`` is sent to the doorbell's speaker
    (Opus) from the moment the session connects until it runs out or the session ends;
    ``on_talk_start`` gets the ``time.monotonic()`` at which its first 20 ms went to the encoder.
    Returns the number of frames decoded."""
    peer = peer_connection()
    transceiver = peer.addTransceiver("video", direction="recvonly")
    talk_track = _TalkTrack(talk, on_talk_start) if talk is not None else None
    if talk_track is None:
        peer.addTransceiver("audio", direction="recvonly")
    else:
        speaking = peer.addTransceiver(talk_track, direction="sendrecv")
        speaking.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        )
    if codec is not None:
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == codec.lower()
            ]
        )
    tracks: dict[str, MediaStreamTrack] = {}
    got_video = asyncio.Event()

    @peer.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        tracks.setdefault(track.kind, track)
        if track.kind == "video":
            got_video.set()

    recorder: MediaRecorder | None = None
    listening: asyncio.Future[None] | None = None
    hanging_up: asyncio.Future[None] | None = None
    count = 0
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await post_offer(peer.localDescription.sdp)
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        if talk_track is not None:
            hanging_up = asyncio.ensure_future(_stop_when_done(talk_track, speaking.sender))
        await asyncio.wait_for(got_video.wait(), connect_timeout_s)
        relay = MediaRelay()
        if out is not None:
            recorder = MediaRecorder(str(out), format="mp4")
            # The MP4 header is written at the first packet: sound must wait until the video
            # stream has its first picture (and so its size), or the file lacks the video.
            pictured = asyncio.Event()
            for track in tracks.values():
                recorder.addTrack(
                    _Gate(relay.subscribe(track, buffered=False), pictured, track.kind == "video")
                )
            await recorder.start()
        if "audio" in tracks:  # drained even if unwanted: aiortc queues what is not taken
            listening = asyncio.ensure_future(
                _listen(relay.subscribe(tracks["audio"], buffered=False), on_audio)
            )
        watched = relay.subscribe(tracks["video"], buffered=False)
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while stop is None or not stop.is_set():
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                picture = await asyncio.wait_for(watched.recv(), timeout or connect_timeout_s)
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    break
                raise
            except MediaStreamError:
                break  # the device hung up
            if not isinstance(picture, av.VideoFrame):
                continue
            count += 1
            if on_frame is not None:
                on_frame(picture)
    finally:
        if hanging_up is not None:
            hanging_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hanging_up
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await listening
        if recorder is not None:
            with contextlib.suppress(MediaStreamError):
                await recorder.stop()
        await peer.close()
    return count


# Silence sent after the sound runs out, before the sender says goodbye: the receiving end's
# jitter buffer holds packets back (aiortc's holds 4 of 20 ms), and they would be lost with it.
_TAIL_CHUNKS = 6


class _TalkTrack(MediaStreamTrack):
    """The owner's sound as an audio track: 20 ms frames of 48 kHz mono, paced in real time
    from the first one the sender asks for; ``done`` is set once the sound has run out."""

    kind = "audio"

    def __init__(self, sound: TalkSound, on_start: Callable[[float], None] | None) -> None:
        super().__init__()
        self._sound = sound
        self._on_start = on_start
        self._index = 0
        self._tail = 0
        self._start: float | None = None
        self.done = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError("the talk track has stopped")
        samples = self._sound.chunk(self._index)
        if samples is None:
            if self._tail >= _TAIL_CHUNKS:
                self.done.set()
                self.stop()
                raise MediaStreamError("the sound has run out")
            self._tail += 1
            samples = np.zeros(TALK_CHUNK_SAMPLES, dtype=np.int16)
        if self._start is None:
            self._start = time.monotonic()
            if self._on_start is not None:
                self._on_start(self._start)
        else:
            wait_s = self._start + self._index * TALK_CHUNK_SAMPLES / TALK_RATE - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = TALK_RATE
        frame.pts = self._index * TALK_CHUNK_SAMPLES
        frame.time_base = fractions.Fraction(1, TALK_RATE)
        self._index += 1
        return frame


async def _stop_when_done(track: _TalkTrack, sender: Any) -> None:
    """Once the sound has run out, stop sending: the RTCP BYE tells the device the owner has
    stopped talking, which frees the doorbell's speaker."""
    await track.done.wait()
    await sender.stop()


class _Gate(MediaStreamTrack):
    """A track for the recorder: the video sets ``pictured`` as it passes its first frame; the
    sound drops frames until then."""

    def __init__(self, source: MediaStreamTrack, pictured: asyncio.Event, video: bool) -> None:
        super().__init__()
        self.kind = source.kind
        self._source, self._pictured, self._video = source, pictured, video

    async def recv(self) -> Any:
        while True:
            frame = await self._source.recv()
            if self._video:
                self._pictured.set()  # the recorder opens its encoder before it awaits again
                return frame
            if self._pictured.is_set():
                return frame


async def _listen(
    track: MediaStreamTrack, on_audio: Callable[[av.AudioFrame], None] | None
) -> None:
    """Hand each decoded audio frame to ``on_audio`` until the track ends."""
    while True:
        sound = await track.recv()
        if isinstance(sound, av.AudioFrame) and on_audio is not None:
            on_audio(sound)
