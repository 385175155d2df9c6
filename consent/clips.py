"""What consent needs from the clip store, as Protocols (consent never imports ``device``).

``device.store.ClipStore`` satisfies :class:`ClipSource`; tests use a small directory-backed one.
The owner's phone sees footage through :class:`FootageIndex`, which a hub client can implement over
the API; :class:`StoreFootage` adapts a local :class:`ClipSource` to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from crypto import age

__all__ = ["ClipLike", "ClipSource", "FootageIndex", "SegmentLike", "StoreFootage"]


class SegmentLike(Protocol):
    """The fields of a stored segment that consent reads."""

    @property
    def segment_id(self) -> str: ...
    @property
    def clip_id(self) -> str: ...
    @property
    def camera(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def start_s(self) -> float: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def size(self) -> int: ...
    @property
    def payload_sha256(self) -> str: ...


class ClipLike(Protocol):
    """The fields of a stored clip that consent reads."""

    @property
    def clip_id(self) -> str: ...
    @property
    def camera(self) -> str: ...
    @property
    def start_s(self) -> float: ...
    @property
    def end_s(self) -> float: ...


@runtime_checkable
class ClipSource(Protocol):
    """The subset of the device's clip store used by consent."""

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]: ...

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]: ...

    def segment(self, segment_id: str) -> SegmentLike:
        """The segment's record; raises KeyError (or a store error) when it does not exist."""
        ...

    def segment_path(self, segment_id: str) -> Path: ...

    def manifest_bytes(self, clip_id: str) -> bytes: ...

    def hold(self, clip_id: str, hold_id: str, until_s: float) -> None: ...

    def release_hold(self, hold_id: str) -> None: ...


class FootageIndex(Protocol):
    """What the owner's phone needs to see clips and re-wrap segments."""

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]: ...

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]: ...

    def segment_header(self, segment_id: str) -> bytes:
        """The segment's age header, up to and including the MAC line."""
        ...

    def manifest_bytes(self, clip_id: str) -> bytes: ...


class StoreFootage:
    """A :class:`FootageIndex` over a local :class:`ClipSource` (tests, single-box setups)."""

    def __init__(self, clips: ClipSource) -> None:
        self._clips = clips

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]:
        return self._clips.list_clips(camera=camera, start_s=start_s, end_s=end_s)

    def list_segments(self, clip_id: str) -> Sequence[SegmentLike]:
        return self._clips.list_segments(clip_id)

    def segment_header(self, segment_id: str) -> bytes:
        with open(self._clips.segment_path(segment_id), "rb") as f:
            return age.read_header(f)

    def manifest_bytes(self, clip_id: str) -> bytes:
        return self._clips.manifest_bytes(clip_id)
