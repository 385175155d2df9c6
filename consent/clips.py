"""What consent needs from the clip store, as Protocols (consent never imports ``device``).

``device.store.ClipStore`` satisfies :class:`ClipSource`; tests use a small directory-backed one.
The owner's phone sees footage through :class:`FootageIndex`, which a hub client can implement over
the API; :class:`StoreFootage` adapts a local :class:`ClipSource` to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = [
    "ClipLike",
    "ClipSource",
    "FootageIndex",
    "SegmentLike",
    "StoreFootage",
    "segment_id_for",
]


def segment_id_for(clip_id: str, index: int) -> str:
    """The id of segment ``index`` of ``clip_id``: ``<clip_id>.<index as 6 digits>``."""
    return f"{clip_id}.{index:06d}"


class SegmentLike(Protocol):
    """The fields of a stored segment that consent reads."""

    @property
    def segment_id(self) -> str:
        """Unique id, always :func:`segment_id_for` its clip and index (the phone refuses others)."""
        ...

    @property
    def clip_id(self) -> str:
        """Id of the clip this segment belongs to."""
        ...

    @property
    def camera(self) -> str:
        """Name of the camera that recorded the segment."""
        ...

    @property
    def index(self) -> int:
        """Position in its clip, counting from 0."""
        ...

    @property
    def start_s(self) -> float:
        """When the segment starts, in UTC epoch seconds."""
        ...

    @property
    def duration_s(self) -> float:
        """Length of the segment in seconds."""
        ...

    @property
    def size(self) -> int:
        """Size of the segment's age file on disk, in bytes."""
        ...

    @property
    def payload_sha256(self) -> str:
        """Lowercase hex SHA-256 of the age payload (the encrypted bytes after the header)."""
        ...


class ClipLike(Protocol):
    """The fields of a stored clip that consent reads."""

    @property
    def clip_id(self) -> str:
        """The clip's id, as :meth:`ClipSource.list_segments` takes it."""
        ...

    @property
    def camera(self) -> str:
        """Name of the camera that recorded the clip."""
        ...

    @property
    def start_s(self) -> float:
        """When the clip starts, in UTC epoch seconds."""
        ...

    @property
    def end_s(self) -> float:
        """When the clip ends, in UTC epoch seconds."""
        ...


@runtime_checkable
class ClipSource(Protocol):
    """The subset of the device's clip store used by consent."""

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]:
        """Clips overlapping [start_s, end_s] (UTC epoch s), oldest first; a None filter is off."""
        ...

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]:
        """The clip's segments in index order; raises (the store: StoreError) if unknown."""
        ...

    def segment(self, segment_id: str) -> SegmentLike:
        """The segment's record; raises KeyError (or a store error) when it does not exist."""
        ...

    def segment_path(self, segment_id: str) -> Path:
        """Where the segment's age file is on disk; raises like :meth:`segment` when unknown."""
        ...

    def manifest_bytes(self, clip_id: str) -> bytes:
        """The clip's device-signed manifest as stored (canonical JSON bytes)."""
        ...

    def hold(self, clip_id: str, hold_id: str, until_s: float) -> None:
        """Keep ``clip_id`` from deletion until ``until_s`` (UTC epoch s), under ``hold_id``."""
        ...

    def release_hold(self, hold_id: str) -> None:
        """Drop every hold placed under ``hold_id``; an unknown id is not an error."""
        ...


class FootageIndex(Protocol):
    """What the owner's phone needs to see clips and re-wrap segments.

    Everything it returns comes from the device and is checked before it is trusted: approval
    verifies each clip manifest's signature and hashes each segment's file itself.
    """

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]:
        """Clips overlapping [start_s, end_s] (UTC epoch s), oldest first; a None filter is off."""
        ...

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]:
        """The clip's segments in index order."""
        ...

    def read_segment(self, segment_id: str) -> BinaryIO:
        """The segment's complete age file (header, then payload) as a binary stream opened for
        reading; the caller closes it."""
        ...

    def manifest_bytes(self, clip_id: str) -> bytes:
        """The clip's device-signed manifest as stored (canonical JSON bytes)."""
        ...


class StoreFootage:
    """A :class:`FootageIndex` over a local :class:`ClipSource` (tests, single-box setups)."""

    def __init__(self, clips: ClipSource) -> None:
        self._clips = clips

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]:
        """``clips.list_clips`` with these filters (a ClipStore returns at most its default 100)."""
        return self._clips.list_clips(camera=camera, start_s=start_s, end_s=end_s)

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]:
        """``clips.list_segments(clip_id)``, unchanged."""
        return self._clips.list_segments(clip_id)

    def read_segment(self, segment_id: str) -> BinaryIO:
        """The segment's age file on local disk, opened for reading."""
        return open(self._clips.segment_path(segment_id), "rb")

    def manifest_bytes(self, clip_id: str) -> bytes:
        """``clips.manifest_bytes(clip_id)``, unchanged."""
        return self._clips.manifest_bytes(clip_id)
