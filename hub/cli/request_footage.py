"""The footage of one request, fetched over the API so ``consent.owner.approve`` can run locally.

``approve`` is synchronous and reads headers and manifests through ``consent.clips.FootageIndex``;
:class:`ApiFootage` fetches exactly what it will read (the clips in the request's window, the
chosen segments' age headers, their clips' signed manifests) before it is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consent.models import ALL_CAMERAS, ConsentRequest
from crypto.errors import DoorwardError
from hub.client import Clip, DoorwardClient, Segment

__all__ = ["ApiFootage"]

_PAGE = 100
_MAX_CLIPS = 1000  # a 12 h window of a busy doorbell stays well below this


class ApiFootage:
    """A :class:`consent.clips.FootageIndex` over data already fetched from the device."""

    def __init__(
        self,
        clips: Sequence[tuple[Clip, Sequence[Segment]]],
        chosen: Sequence[Segment],
        headers: dict[str, bytes],
        manifests: dict[str, bytes],
    ) -> None:
        self._clips = list(clips)
        self._chosen = list(chosen)
        self._headers = headers
        self._manifests = manifests

    @classmethod
    async def load(
        cls, api: DoorwardClient, request: ConsentRequest, wanted: Sequence[str] | None
    ) -> ApiFootage:
        """The request's footage; ``wanted`` segment ids (None: every segment in the window)."""
        camera = None if request.camera == ALL_CAMERAS else request.camera
        clips: list[tuple[Clip, Sequence[Segment]]] = []
        after = None
        while len(clips) < _MAX_CLIPS:
            page = await api.clips(
                camera=camera,
                start_s=request.window_start_s,
                end_s=request.window_end_s,
                limit=_PAGE,
                after=after,
            )
            for summary in page.clips:
                clip = await api.clip(summary.clip_id)
                in_scope = [
                    s for s in clip.segments if request.covers(s.camera, s.start_s, s.duration_s)
                ]
                if in_scope:
                    clips.append((clip, in_scope))
            if page.next is None:
                break
            after = page.next
        in_window = {s.segment_id: s for _, segments in clips for s in segments}
        if not in_window:
            raise DoorwardError(
                f"no recorded segment falls in request {request.request_id}'s camera and window"
            )
        if wanted is None:
            chosen = list(in_window.values())
        else:
            unknown = [w for w in wanted if w not in in_window]
            if unknown or not wanted:
                raise DoorwardError(
                    f"segment(s) {', '.join(unknown) or '(none given)'} are not in the request's "
                    f"window; choose from: {', '.join(in_window)}"
                )
            chosen = [in_window[w] for w in dict.fromkeys(wanted)]
        headers = {s.segment_id: await api.segment_header(s.segment_id) for s in chosen}
        manifests = {
            clip_id: await api.clip_manifest(clip_id) for clip_id in {s.clip_id for s in chosen}
        }
        return cls(clips, chosen, headers, manifests)

    def chosen(self) -> list[Segment]:
        """The segments chosen for release, in the order they were asked for."""
        return list(self._chosen)

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> list[Any]:
        """The fetched clips overlapping (``start_s``, ``end_s``), on ``camera`` only if given; no
        request is made."""
        return [
            clip
            for clip, _ in self._clips
            if (camera is None or clip.camera == camera)
            and (end_s is None or clip.start_s < end_s)
            and (start_s is None or clip.end_s is None or clip.end_s > start_s)
        ]

    def list_segments(self, clip_id: str) -> list[Any]:
        """The fetched segments of ``clip_id`` that the request covers (empty if unknown)."""
        for clip, segments in self._clips:
            if clip.clip_id == clip_id:
                return list(segments)
        return []

    def segment_header(self, segment_id: str) -> bytes:
        """A chosen segment's age header; raises KeyError for a segment that was not chosen."""
        return self._headers[segment_id]

    def manifest_bytes(self, clip_id: str) -> bytes:
        """A chosen segment's clip manifest; raises KeyError for any other clip."""
        return self._manifests[clip_id]
