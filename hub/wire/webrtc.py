"""WebRTC as both sides set it up: ICE stays on the LAN.

No STUN or TURN server is configured (``RTCConfiguration(iceServers=[])``), so only host
candidates are offered and nothing leaves the local network.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection

__all__ = ["peer_connection"]


def peer_connection() -> RTCPeerConnection:
    """A peer connection that uses host candidates only (no STUN/TURN: the LAN is enough)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))
