"""aiortc glue: the relay's frames as a WebRTC video track, the device's answer, an owner's viewer.

ICE stays on the LAN: no STUN or TURN server is configured (``RTCConfiguration(iceServers=[])``),
so only host candidates are offered and nothing leaves the local network.

Encoding: when the viewer's offer accepts H.264 (packetization-mode 1), the answer offers H.264
only and the track hands aiortc ready-made access units (``av.Packet``), which its sender
packetizes without encoding: the camera's own H.264 passed through, or one libx264 encode per
camera shared by every such viewer (``hub._live_h264``). Only a peer without H.264 gets a raw-frame
track, which aiortc encodes (VP8) per peer connection.
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
import numpy as np
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

from hardware._frames import Frame
from hub._errors import BadRequest
from hub._live_h264 import PacketViewer
from hub.live import FrameRelay, Viewer

__all__ = [
    "VIDEO_TIME_BASE",
    "PacketTrack",
    "RelayTrack",
    "answer_offer",
    "frame_to_av",
    "peer_connection",
    "receive_live",
]

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock (RFC 3551 §5)
MAX_SDP_BYTES = 64 * 1024


def peer_connection() -> RTCPeerConnection:
    """A peer connection that uses host candidates only (no STUN/TURN: the LAN is enough)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def frame_to_av(frame: Frame) -> av.VideoFrame:
    """A yuv420p ``av.VideoFrame`` of our frame, stamped with its capture time on the RTP clock."""
    h, w = frame.y.shape
    planes = np.concatenate((frame.y.reshape(-1), frame.u.reshape(-1), frame.v.reshape(-1)))
    picture = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
    picture.pts = round(frame.pts_s / VIDEO_TIME_BASE)
    picture.time_base = VIDEO_TIME_BASE
    return picture


class RelayTrack(MediaStreamTrack):
    """A video track that plays a relay viewer: the newest frame each time the sender asks."""

    kind = "video"

    def __init__(self, viewer: Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame:
        frame = await self._viewer.next()
        if frame is None:
            self.stop()
            raise MediaStreamError("the live session ended")
        picture = frame_to_av(frame)
        # RTP timestamps must move forward even if a source's clock restarts (reconnect).
        pts = max(round(frame.pts_s / VIDEO_TIME_BASE), self._last_pts + 1)
        picture.pts = self._last_pts = pts
        return picture

    def stop(self) -> None:
        super().stop()
        self._viewer.close()


class PacketTrack(MediaStreamTrack):
    """A video track of ready-made H.264 access units, which aiortc sends without encoding."""

    kind = "video"

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
        packet.time_base = VIDEO_TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        self._viewer.close()


def offers_h264(offer_sdp: str) -> bool:
    """Whether the offer's first video section accepts H.264 in packetization mode 1 (FU-A,
    RFC 6184 §6.3), the mode aiortc sends."""
    try:
        description = SessionDescription.parse(offer_sdp)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"the SDP offer cannot be parsed: {str(exc)[:200]}") from exc
    for media in description.media:
        if media.kind == "video":
            return any(
                c.mimeType.lower() == "video/h264"
                and str(c.parameters.get("packetization-mode")) == "1"
                for c in media.rtp.codecs
            )
    return False


async def answer_offer(
    offer_sdp: str, relay: FrameRelay, camera: str, on_closed: Callable[[], None]
) -> tuple[RTCPeerConnection, str, Viewer | PacketViewer]:
    """Answer a viewer's offer with a track of ``camera``; ``on_closed`` runs on hang-up."""
    if not isinstance(offer_sdp, str) or not offer_sdp.startswith("v=0"):
        raise BadRequest("sdp must be an SDP offer (text starting with v=0)")
    if len(offer_sdp) > MAX_SDP_BYTES:
        raise BadRequest(f"sdp must be at most {MAX_SDP_BYTES} bytes, got {len(offer_sdp)}")
    h264 = offers_h264(offer_sdp)
    peer = peer_connection()
    viewer: Viewer | PacketViewer
    track: MediaStreamTrack
    if h264:
        viewer = relay.h264(camera).subscribe()
        track = PacketTrack(viewer)
    else:
        viewer = relay.subscribe(camera)
        track = RelayTrack(viewer)
    if h264:
        # Answer with H.264 only, so the sender packetizes our access units as they are.
        transceiver = peer.addTransceiver(track, direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences(
            [c for c in capabilities if c.mimeType.lower() in ("video/h264", "video/rtx")]
        )

    @peer.on("connectionstatechange")
    def _changed() -> None:
        logger.info("live.peer_state state=%s", peer.connectionState)
        if peer.connectionState in ("failed", "closed"):
            on_closed()

    try:
        await peer.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        videos = [t for t in peer.getTransceivers() if t.kind == "video"]
        if not videos:
            raise BadRequest("the offer has no video section; offer to receive video")
        if not h264:
            videos[0].sender.replaceTrack(track)
            videos[0].direction = "sendonly"
        await peer.setLocalDescription(await peer.createAnswer())
    except ValueError as exc:  # aiortc rejects malformed SDP with ValueError
        viewer.close()
        await peer.close()
        raise BadRequest(f"the SDP offer was refused: {str(exc)[:200]}") from exc
    except BaseException:
        viewer.close()
        await peer.close()
        raise
    return peer, peer.localDescription.sdp, viewer


async def receive_live(
    post_offer: Callable[[str], Awaitable[str]],
    *,
    on_frame: Callable[[av.VideoFrame], None] | None = None,
    seconds: float | None = None,
    out: Path | None = None,
    stop: asyncio.Event | None = None,
    connect_timeout_s: float = 20.0,
    codec: str | None = None,
) -> int:
    """Watch live view as an owner: send an offer through ``post_offer`` (which returns the
    answer SDP), then decode frames until ``seconds`` pass, ``stop`` is set or the device hangs
    up; ``out`` records what arrived (MP4); ``codec`` (e.g. ``"video/VP8"``) limits what the
    offer accepts. Returns the number of frames decoded."""
    peer = peer_connection()
    transceiver = peer.addTransceiver("video", direction="recvonly")
    if codec is not None:
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == codec.lower()
            ]
        )
    got_track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @peer.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not got_track.done():
            got_track.set_result(track)

    recorder: MediaRecorder | None = None
    count = 0
    try:
        await peer.setLocalDescription(await peer.createOffer())
        answer = await post_offer(peer.localDescription.sdp)
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        track = await asyncio.wait_for(got_track, connect_timeout_s)
        relay = MediaRelay()
        if out is not None:
            recorder = MediaRecorder(str(out), format="mp4")
            recorder.addTrack(relay.subscribe(track, buffered=False))
            await recorder.start()
        watched = relay.subscribe(track, buffered=False)
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
        if recorder is not None:
            with contextlib.suppress(MediaStreamError):
                await recorder.stop()
        await peer.close()
    return count
