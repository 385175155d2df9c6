"""aiortc glue: the relay's feeds as WebRTC tracks, the device's answer, an owner's viewer.

ICE stays on the LAN: no STUN or TURN server is configured (``RTCConfiguration(iceServers=[])``),
so only host candidates are offered and nothing leaves the local network.

Encoding: the device never encodes per peer. The answer offers one video codec, H.264
(packetization mode 1) when the viewer's offer accepts it, else VP8, and the video track hands
aiortc ready-made packets (``av.Packet``) of the camera's feed in that codec, which its sender
packetizes without encoding: the camera's own H.264 passed through, or one encode per camera and
codec shared by every such viewer (``hub.server.live.feed``). Sound goes the same way: when the camera
has a microphone and the offer accepts Opus, an audio track plays the camera's one Opus encode
(``hub.server.live.audio``).

Talking back: an offer whose audio section sends (``sendrecv`` or ``sendonly``) asks to talk. It
must offer Opus; the answer's audio section is then ``sendrecv`` (or ``recvonly`` for a camera
without a microphone), and the owner's sound, decoded once by aiortc's receiver, comes out of
:attr:`Answered.talk` as mono chunks for the camera's speaker (``hub.server.speakers``). Before
anything is set up, ``claim_talk`` takes the speaker's floor, or refuses the offer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import MediaDescription, SessionDescription

from hardware import AudioChunk
from hub.server.live.audio import AUDIO_TIME_BASE
from hub.server.live.feed import PacketViewer
from hub.server.live.relay import Answered, FrameRelay
from hub.wire.errors import BadRequest
from hub.wire.webrtc import peer_connection

__all__ = [
    "VIDEO_TIME_BASE",
    "AudioPacketTrack",
    "OwnerSound",
    "PacketTrack",
    "answer_offer",
    "peer_connection",
]

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 3551 §5)
MAX_SDP_BYTES = 64 * 1024
MAX_QUEUED_TALK = 25  # 20 ms chunks of an owner's sound waiting for the speaker (half a second)


class PacketTrack(MediaStreamTrack):
    """A video track of ready-made packets (H.264 or VP8), which aiortc sends without encoding."""

    kind = "video"
    time_base = VIDEO_TIME_BASE

    def __init__(self, viewer: PacketViewer) -> None:
        super().__init__()
        self._viewer = viewer

    async def recv(self) -> av.Packet[Any]:
        """The viewer's next packet, stamped on the track's clock (aiortc calls this); once the
        session has ended, stops the track and raises MediaStreamError."""
        unit = await self._viewer.next()
        if unit is None:
            self.stop()
            raise MediaStreamError("the live session ended")
        packet = av.Packet(unit.data)
        packet.pts = unit.pts
        packet.time_base = self.time_base
        return packet

    def stop(self) -> None:
        """Stop the track and close its viewer, which leaves the feed."""
        super().stop()
        self._viewer.close()


class AudioPacketTrack(PacketTrack):
    """An audio track of ready-made Opus packets on the 48 kHz clock."""

    kind = "audio"
    time_base = AUDIO_TIME_BASE


def _parse(offer_sdp: str) -> SessionDescription:
    try:
        return SessionDescription.parse(offer_sdp)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"the SDP offer cannot be parsed: {str(exc)[:200]}") from exc


def _talk_section(description: SessionDescription) -> MediaDescription | None:
    """The offer's first audio section if it sends audio (the owner talks back), else None; it
    must offer Opus, the only codec the device decodes for its speaker."""
    media = next((m for m in description.media if m.kind == "audio"), None)
    if media is None or media.direction not in (None, "sendrecv", "sendonly"):
        return None
    codecs = [c.mimeType for c in media.rtp.codecs]
    if not any(c.lower() == "audio/opus" for c in codecs):
        offered = ", ".join(sorted({c.split("/", 1)[-1] for c in codecs})[:8]) or "no codec"
        raise BadRequest(
            f"talking back needs Opus audio, but the offer sends {offered[:120]}; offer "
            "audio/opus (48000 Hz), or receive only"
        )
    return media


def _accepted(description: SessionDescription) -> dict[str, set[str]]:
    """What the offer's first section of each kind accepts: {"video": {"video/h264", ...}, ...};
    H.264 counts only in packetization mode 1 (FU-A, RFC 6184 §6.3), the mode aiortc sends."""
    accepted: dict[str, set[str]] = {}
    for media in description.media:
        if media.kind in accepted or media.direction not in (None, "sendrecv", "recvonly"):
            continue
        accepted[media.kind] = {
            c.mimeType.lower()
            for c in media.rtp.codecs
            if c.mimeType.lower() != "video/h264"
            or str(c.parameters.get("packetization-mode")) == "1"
        }
    return accepted


def _send(
    peer: RTCPeerConnection,
    track: MediaStreamTrack | str,
    mime_type: str,
    direction: str = "sendonly",
) -> Any:
    """Add ``track`` (or a receiving section of that kind) to the answer, offering only
    ``mime_type`` (and retransmission), so the sender packetizes our packets as they are."""
    transceiver = peer.addTransceiver(track, direction=direction)
    kind = track if isinstance(track, str) else track.kind
    transceiver.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities(kind).codecs
            if c.mimeType.lower() in (mime_type, "video/rtx")
        ]
    )
    return transceiver


async def answer_offer(
    offer_sdp: str,
    relay: FrameRelay,
    camera: str,
    on_closed: Callable[[], None],
    *,
    claim_talk: Callable[[], None] | None = None,
) -> Answered:
    """Answer a viewer's offer with the video (and sound, if both sides have it) of ``camera``;
    ``on_closed`` runs on hang-up. An offer that sends audio talks back: ``claim_talk`` is
    called first (it raises to refuse; without it such an offer is refused)."""
    if not isinstance(offer_sdp, str) or not offer_sdp.startswith("v=0"):
        raise BadRequest("sdp must be an SDP offer (text starting with v=0)")
    if len(offer_sdp) > MAX_SDP_BYTES:
        raise BadRequest(f"sdp must be at most {MAX_SDP_BYTES} bytes, got {len(offer_sdp)}")
    description = _parse(offer_sdp)
    accepted = _accepted(description)
    talking = _talk_section(description) is not None
    if "video" not in accepted:
        raise BadRequest("the offer has no video section; offer to receive video")
    codec = next((c for c in ("h264", "vp8") if f"video/{c}" in accepted["video"]), None)
    if codec is None:
        raise BadRequest(
            "the offer accepts neither H.264 (packetization-mode=1) nor VP8; offer one of them"
        )
    feed = relay.feed(camera, codec)
    sound = relay.audio(camera) if "audio/opus" in accepted.get("audio", ()) else None
    if talking:
        if claim_talk is None:
            raise BadRequest("this device does not take sound from viewers; offer to receive only")
        claim_talk()  # refuses (409) while someone else holds the speaker; nothing set up yet
    peer = peer_connection()
    viewer = feed.subscribe()
    listener = sound.subscribe() if sound is not None else None
    _send(peer, PacketTrack(viewer), f"video/{codec}")
    talk_transceiver = None
    if listener is not None:
        direction = "sendrecv" if talking else "sendonly"
        talk_transceiver = _send(peer, AudioPacketTrack(listener), "audio/opus", direction)
    elif talking:
        talk_transceiver = _send(peer, "audio", "audio/opus", "recvonly")

    @peer.on("connectionstatechange")
    def _changed() -> None:
        logger.info("live.peer_state state=%s", peer.connectionState)
        if peer.connectionState in ("failed", "closed"):
            on_closed()

    try:
        await peer.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await peer.setLocalDescription(await peer.createAnswer())
    except ValueError as exc:  # aiortc rejects malformed SDP with ValueError
        await _abandon(peer, viewer, listener)
        raise BadRequest(f"the SDP offer was refused: {str(exc)[:200]}") from exc
    except BaseException:
        await _abandon(peer, viewer, listener)
        raise
    talk = None
    if talking and talk_transceiver is not None:
        talk = OwnerSound(talk_transceiver.receiver.track)
    return Answered(peer, peer.localDescription.sdp, viewer, listener, feed.encoding, talk)


class OwnerSound:
    """The owner's decoded sound as mono chunks (their channels averaged), until the track ends
    (the owner stopped sending, or the session closed). The track is drained as fast as it
    delivers into a queue of at most ``MAX_QUEUED_TALK`` chunks that the speaker empties at its
    own pace: a phone that sends faster than real time loses its oldest sound (``dropped``
    counts it), and never makes the device hold more than that. Once the chunks are no longer
    read (the talk ended, e.g. the owner went silent), the track is still drained until it
    ends, and what arrives is dropped: aiortc would otherwise queue it for the whole session."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.dropped = 0  # chunks lost because the speaker was that far behind
        self._track = track
        self._queued: collections.deque[AudioChunk | None] = collections.deque()
        self._ready = asyncio.Event()
        self._listening = True
        self._reader: asyncio.Task[None] | None = None
        self._chunks = self._run()

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self._chunks

    async def _drain(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self._track.recv()
                if not self._listening or not isinstance(frame, av.AudioFrame):
                    continue
                if len(self._queued) >= MAX_QUEUED_TALK:
                    self._queued.popleft()
                    self.dropped += 1
                self._queued.append(_mono_chunk(frame))
                self._ready.set()
        self._queued.append(None)
        self._ready.set()

    async def _run(self) -> AsyncIterator[AudioChunk]:
        self._reader = asyncio.ensure_future(self._drain())
        try:
            while True:
                while not self._queued:
                    self._ready.clear()
                    await self._ready.wait()
                chunk = self._queued.popleft()
                if chunk is None:
                    return
                yield chunk
        finally:
            self._listening = False  # drain on, dropping, until the track ends
            self._queued.clear()


def _mono_chunk(frame: av.AudioFrame) -> AudioChunk:
    """One decoded frame (aiortc's Opus decoder gives 16-bit, packed, two channels) as mono,
    its channels averaged in integers (this runs on the event loop for every 20 ms the owner
    talks: half the cost of a float mean)."""
    channels = len(frame.layout.channels)
    count = frame.samples
    if frame.format.name not in ("s16", "s16p"):  # not aiortc's Opus decoder: convert first
        layout, rate = frame.layout.name, frame.sample_rate
        (frame,) = av.AudioResampler(format="s16", layout=layout, rate=rate).resample(frame)
    if frame.format.is_planar:
        planes = [np.frombuffer(p, dtype=np.int16, count=count) for p in frame.planes[:channels]]
        mixed = np.sum(planes, axis=0, dtype=np.int32)
    else:
        packed = np.frombuffer(frame.planes[0], dtype=np.int16, count=count * channels)
        mixed = packed.reshape(count, channels).sum(axis=1, dtype=np.int32)
    if channels > 1:
        mixed //= channels
    return AudioChunk(frame.time or 0.0, mixed.astype(np.int16), frame.sample_rate)


async def _abandon(
    peer: RTCPeerConnection, viewer: PacketViewer, listener: PacketViewer | None
) -> None:
    viewer.close()
    if listener is not None:
        listener.close()
    await peer.close()
