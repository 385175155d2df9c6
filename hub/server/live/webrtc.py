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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from hub.server.live.audio import AUDIO_TIME_BASE
from hub.server.live.feed import PacketViewer
from hub.server.live.relay import Answered, FrameRelay
from hub.wire.errors import BadRequest

__all__ = [
    "VIDEO_TIME_BASE",
    "AudioPacketTrack",
    "PacketTrack",
    "answer_offer",
    "peer_connection",
    "receive_live",
]

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 3551 §5)
MAX_SDP_BYTES = 64 * 1024


def peer_connection() -> RTCPeerConnection:
    """A peer connection that uses host candidates only (no STUN/TURN: the LAN is enough)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class PacketTrack(MediaStreamTrack):
    """A video track of ready-made packets (H.264 or VP8), which aiortc sends without encoding."""

    kind = "video"
    time_base = VIDEO_TIME_BASE

    def __init__(self, viewer: PacketViewer) -> None:
        super().__init__()
        self._viewer = viewer

    async def recv(self) -> av.Packet[Any]:
        unit = await self._viewer.next()
        if unit is None:
            self.stop()
            raise MediaStreamError("the live session ended")
        packet = av.Packet(unit.data)
        packet.pts = unit.pts
        packet.time_base = self.time_base
        return packet

    def stop(self) -> None:
        super().stop()
        self._viewer.close()


class AudioPacketTrack(PacketTrack):
    """An audio track of ready-made Opus packets on the 48 kHz clock."""

    kind = "audio"
    time_base = AUDIO_TIME_BASE


def _accepted(offer_sdp: str) -> dict[str, set[str]]:
    """What the offer's first section of each kind accepts: {"video": {"video/h264", ...}, ...};
    H.264 counts only in packetization mode 1 (FU-A, RFC 6184 §6.3), the mode aiortc sends."""
    try:
        description = SessionDescription.parse(offer_sdp)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"the SDP offer cannot be parsed: {str(exc)[:200]}") from exc
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


def _send(peer: RTCPeerConnection, track: MediaStreamTrack, mime_type: str) -> None:
    """Add ``track`` to the answer, offering only ``mime_type`` (and retransmission), so the
    sender packetizes our packets as they are."""
    transceiver = peer.addTransceiver(track, direction="sendonly")
    transceiver.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities(track.kind).codecs
            if c.mimeType.lower() in (mime_type, "video/rtx")
        ]
    )


async def answer_offer(
    offer_sdp: str, relay: FrameRelay, camera: str, on_closed: Callable[[], None]
) -> Answered:
    """Answer a viewer's offer with the video (and sound, if both sides have it) of ``camera``;
    ``on_closed`` runs on hang-up."""
    if not isinstance(offer_sdp, str) or not offer_sdp.startswith("v=0"):
        raise BadRequest("sdp must be an SDP offer (text starting with v=0)")
    if len(offer_sdp) > MAX_SDP_BYTES:
        raise BadRequest(f"sdp must be at most {MAX_SDP_BYTES} bytes, got {len(offer_sdp)}")
    accepted = _accepted(offer_sdp)
    if "video" not in accepted:
        raise BadRequest("the offer has no video section; offer to receive video")
    codec = next((c for c in ("h264", "vp8") if f"video/{c}" in accepted["video"]), None)
    if codec is None:
        raise BadRequest(
            "the offer accepts neither H.264 (packetization-mode=1) nor VP8; offer one of them"
        )
    feed = relay.feed(camera, codec)
    sound = relay.audio(camera) if "audio/opus" in accepted.get("audio", ()) else None
    peer = peer_connection()
    viewer = feed.subscribe()
    listener = sound.subscribe() if sound is not None else None
    _send(peer, PacketTrack(viewer), f"video/{codec}")
    if listener is not None:
        _send(peer, AudioPacketTrack(listener), "audio/opus")

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
    return Answered(peer, peer.localDescription.sdp, viewer, listener, feed.encoding)


async def _abandon(
    peer: RTCPeerConnection, viewer: PacketViewer, listener: PacketViewer | None
) -> None:
    viewer.close()
    if listener is not None:
        listener.close()
    await peer.close()


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
) -> int:
    """Watch live view as an owner: send an offer through ``post_offer`` (which returns the
    answer SDP), then decode frames until ``seconds`` pass, ``stop`` is set or the device hangs
    up. The offer also asks for sound: when the device sends it, each decoded audio frame goes
    to ``on_audio``. ``out`` records what arrived, pictures and sound (MP4); ``codec`` (e.g.
    ``"video/VP8"``) limits what the offer accepts. Returns the number of frames decoded."""
    peer = peer_connection()
    transceiver = peer.addTransceiver("video", direction="recvonly")
    peer.addTransceiver("audio", direction="recvonly")
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
    count = 0
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await post_offer(peer.localDescription.sdp)
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
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
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await listening
        if recorder is not None:
            with contextlib.suppress(MediaStreamError):
                await recorder.stop()
        await peer.close()
    return count


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
