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

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from hub.server.live.audio import AUDIO_TIME_BASE
from hub.server.live.feed import PacketViewer
from hub.server.live.relay import Answered, FrameRelay
from hub.wire.errors import BadRequest
from hub.wire.webrtc import peer_connection

__all__ = [
    "VIDEO_TIME_BASE",
    "AudioPacketTrack",
    "PacketTrack",
    "answer_offer",
    "peer_connection",
]

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 3551 §5)
MAX_SDP_BYTES = 64 * 1024


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
