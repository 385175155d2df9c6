"""The phone's side of the hub: the async API client, its records, profiles and live viewing.

Common case::

    from hub.client import DoorwardClient

    async with DoorwardClient(url, fingerprint=pin, device_id=device, key=keys.signing_key) as api:
        page = await api.clips(camera="front")
"""

from hub.client.api import ApiError, DoorwardClient, DownloadTooLarge, EventStreamDropped, pair
from hub.client.records import (
    AuditEntries,
    Camera,
    Clip,
    ClipPage,
    CosignatureInfo,
    EventMessage,
    LiveLink,
    LiveStats,
    OwnerInfo,
    PlayedReply,
    ReleaseInfo,
    ReleaseLink,
    ReplyInfo,
    RequestInfo,
    Segment,
)

__all__ = [
    "ApiError",
    "AuditEntries",
    "Camera",
    "Clip",
    "ClipPage",
    "CosignatureInfo",
    "DoorwardClient",
    "DownloadTooLarge",
    "EventMessage",
    "EventStreamDropped",
    "LiveLink",
    "LiveStats",
    "OwnerInfo",
    "PlayedReply",
    "ReleaseInfo",
    "ReleaseLink",
    "ReplyInfo",
    "RequestInfo",
    "Segment",
    "pair",
]
