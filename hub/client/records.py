"""The records :class:`hub.client.api.DoorwardClient` returns, and how each is read from the API's
JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AuditEntries",
    "Camera",
    "Clip",
    "ClipPage",
    "CosignatureInfo",
    "EventMessage",
    "LiveLink",
    "LiveStats",
    "OwnerInfo",
    "PlayedReply",
    "ReleaseInfo",
    "ReleaseLink",
    "ReplyInfo",
    "RequestInfo",
    "Segment",
    "clip_of",
    "cosignature_of",
    "owner_of",
    "release_link_of",
    "release_of",
    "reply_of",
    "request_of",
    "segment_of",
]


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera on the device: its name (used as ``camera=``), frame size in pixels, fps, codec."""

    name: str
    width: int
    height: int
    fps: float
    codec: str


@dataclass(frozen=True, slots=True)
class Segment:
    """One stored, encrypted segment: ``index`` (from 0) in its clip, start (seconds since 1970)
    and duration in seconds, ``size`` of its age file in bytes, and the SHA-256 (hex) of its age
    payload, which stays the same when the header is re-wrapped for a requester."""

    segment_id: str
    clip_id: str
    camera: str
    index: int
    start_s: float
    duration_s: float
    size: int
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class Clip:
    """One recording on a camera: start and end in seconds since 1970 (``end_s`` None until it
    is ``finished``), segment count and total ``bytes`` stored; ``segments`` is filled only by
    ``DoorwardClient.clip()``."""

    clip_id: str
    camera: str
    start_s: float
    end_s: float | None
    segment_count: int
    bytes: int
    finished: bool
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True, slots=True)
class ClipPage:
    """One page of clips; pass ``next`` as ``after`` for the following page (None: last page)."""

    clips: tuple[Clip, ...]
    next: str | None


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A footage request as the device stores it: ``status`` (``pending``, ``approved``,
    ``declined``, ``auto_declined`` or ``expired``), the ``rule`` and ``reason`` behind a decision,
    times in seconds since 1970. ``token`` (the requester's signed JWS) comes only with
    ``requests()`` and ``request()``, ``release_ids`` with those and ``request_status()``."""

    request_id: str
    status: str
    rule: str | None
    reason: str | None
    expires_s: int
    requester_key_id: str | None = None
    received_s: int | None = None
    token: str | None = field(default=None, repr=False)
    release_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """Footage an owner released to a requester: valid until ``expires_s`` (seconds since
    1970), ``downloads`` of ``max_downloads`` used, the index of its ``release.created`` audit
    entry."""

    release_id: str
    request_id: str
    owner_key_id: str
    requester_key_id: str
    expires_s: int
    max_downloads: int
    downloads: int
    revoked: bool
    segment_ids: tuple[str, ...]
    clip_ids: tuple[str, ...]
    audit_index: int


@dataclass(frozen=True, slots=True)
class ReleaseLink:
    """A presigned URL for a release bundle in the device's off-site store, working until
    ``expires_s`` (seconds since 1970); ``link_id`` names it for a direct fetch if it fails."""

    release_id: str
    link_id: str
    expires_s: int
    url: str = field(repr=False)  # carries the store's signature


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """A paired owner: its key id, name, admin flag, age ``recipient``, and when it was added
    and removed (seconds since 1970; ``removed_s`` None while it is an owner)."""

    key_id: str
    name: str
    admin: bool
    added_s: int
    removed_s: int | None
    recipient: str = field(repr=False)
    ed25519: str = field(default="", repr=False)  # its signing key, unpadded base64url


@dataclass(frozen=True, slots=True)
class CosignatureInfo:
    """An owner's latest cosignature of the device's audit log: the tree ``size`` it cosigned,
    when (``time_s``, seconds since 1970), and the cosigned ``checkpoint`` note."""

    owner_key_id: str
    size: int
    time_s: int
    checkpoint: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuditEntries:
    """Audit log leaves (canonical JSON bytes) from index ``first_index`` on, and the log's ``size``
    when they were read."""

    size: int
    leaves: tuple[bytes, ...]
    first_index: int


@dataclass(frozen=True, slots=True)
class LiveLink:
    """A single-use link to the device's live-view page, valid until ``expires_s`` (epoch s)."""

    url: str = field(repr=False)  # carries the link token
    expires_s: int


@dataclass(frozen=True, slots=True)
class LiveStats:
    """What a live-view session delivered: decoded video frames and audio frames (20 ms each)."""

    frames: int
    audio_frames: int


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One device event: ``seq`` (counts up from 1 across all kinds since the device started),
    ``kind`` (``hub.wire.events.EVENT_KINDS``), ``time_s`` (seconds since 1970) and its fields."""

    seq: int
    kind: str
    time_s: float
    data: dict[str, Any]


def segment_of(s: Mapping[str, Any]) -> Segment:
    """A :class:`Segment` from its API JSON; a missing member raises KeyError."""
    return Segment(
        s["segment_id"],
        s["clip_id"],
        s["camera"],
        s["index"],
        s["start"],
        s["duration"],
        s["size"],
        s["payload_sha256"],
    )


def clip_of(c: Mapping[str, Any], segments: tuple[Segment, ...] = ()) -> Clip:
    """A :class:`Clip` from its API JSON with ``segments`` attached; a missing member raises
    KeyError."""
    return Clip(
        c["clip_id"],
        c["camera"],
        c["start"],
        c["end"],
        c["segments"],
        c["bytes"],
        c["finished"],
        segments,
    )


def request_of(r: Mapping[str, Any]) -> RequestInfo:
    """A :class:`RequestInfo` from its API JSON; a missing required member raises KeyError."""
    return RequestInfo(
        request_id=r["request_id"],
        status=r["status"],
        rule=r.get("rule"),
        reason=r.get("reason"),
        expires_s=r["expires"],
        requester_key_id=r.get("requester_key_id"),
        received_s=r.get("received"),
        token=r.get("token"),
        release_ids=tuple(r.get("release_ids", ())),
    )


def release_of(r: Mapping[str, Any]) -> ReleaseInfo:
    """A :class:`ReleaseInfo` from its API JSON; a missing member raises KeyError."""
    return ReleaseInfo(
        release_id=r["release_id"],
        request_id=r["request_id"],
        owner_key_id=r["owner_key_id"],
        requester_key_id=r["requester_key_id"],
        expires_s=r["expires"],
        max_downloads=r["max_downloads"],
        downloads=r["downloads"],
        revoked=r["revoked"],
        segment_ids=tuple(r["segment_ids"]),
        clip_ids=tuple(r["clip_ids"]),
        audit_index=r["audit_index"],
    )


def release_link_of(r: Mapping[str, Any]) -> ReleaseLink:
    """A :class:`ReleaseLink` from its API JSON; a missing member raises KeyError."""
    url = r["url"]
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ValueError("a release link's url must be an http:// or https:// URL")
    return ReleaseLink(str(r["release_id"]), str(r["link_id"]), int(r["expires"]), url)


def owner_of(o: Mapping[str, Any]) -> OwnerInfo:
    """An :class:`OwnerInfo` from its API JSON; a missing member raises KeyError."""
    return OwnerInfo(
        o["key_id"],
        o["name"],
        o["admin"],
        o["added"],
        o["removed"],
        o["recipient"],
        o.get("ed25519", ""),
    )


@dataclass(frozen=True, slots=True)
class ReplyInfo:
    """A quick reply stored on the device: its name, how long it plays (seconds), when it was
    added (seconds since 1970) and by which owner, and the file uploaded (format, codec, sample
    rate, channels, size in bytes, SHA-256 hex)."""

    name: str
    duration_s: float
    added_s: int
    owner_key_id: str
    source_format: str
    codec: str
    sample_rate: int
    channels: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PlayedReply:
    """A quick reply the device played to the end: its name, the camera and its length (s)."""

    name: str
    camera: str
    duration_s: float


def reply_of(r: Mapping[str, Any]) -> ReplyInfo:
    """A :class:`ReplyInfo` from its API JSON; a missing member raises KeyError."""
    return ReplyInfo(
        r["name"],
        float(r["duration"]),
        int(r["added"]),
        r["owner_key_id"],
        r["format"],
        r["codec"],
        int(r["sample_rate"]),
        int(r["channels"]),
        int(r["bytes"]),
        r["sha256"],
    )


def cosignature_of(c: Mapping[str, Any]) -> CosignatureInfo:
    """A :class:`CosignatureInfo` from its API JSON; a missing member raises KeyError."""
    return CosignatureInfo(c["owner_key_id"], c["size"], c["time"], c["checkpoint"])
