"""The footage of one request, fetched over the API so ``consent.owner.approve`` can run locally.

``approve`` is synchronous and reads segment files and manifests through
``consent.clips.FootageIndex``; :class:`ApiFootage` fetches exactly what it will read (the clips in
the request's window, the chosen segments' complete age files, their clips' signed manifests)
before it is called. Segment files go to a directory the caller owns, not to memory; nothing in
them is trusted until ``approve`` has checked it against the device's signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from consent.models import ALL_CAMERAS, ConsentRequest
from crypto.errors import DoorwardError
from hub.client import Clip, DoorwardClient, Segment

__all__ = ["ApiFootage", "segments_in_window"]

_PAGE = 100
_MAX_CLIPS = 1000  # a 12 h window of a busy doorbell stays well below this
# A segment is a few seconds of video (about 2 MB at 8 Mbit/s); past this, a device that says
# otherwise is filling the phone's disk.
_MAX_SEGMENT_BYTES = 256 * 1024 * 1024


class ApiFootage:
    """A :class:`consent.clips.FootageIndex` over data already fetched from the device."""

    def __init__(
        self,
        clips: Sequence[tuple[Clip, Sequence[Segment]]],
        chosen: Sequence[Segment],
        files: dict[str, Path],
        manifests: dict[str, bytes],
    ) -> None:
        self._clips = list(clips)
        self._chosen = list(chosen)
        self._files = files
        self._manifests = manifests

    @classmethod
    async def load(
        cls,
        api: DoorwardClient,
        request: ConsentRequest,
        wanted: Sequence[str] | None,
        *,
        workdir: Path,
    ) -> ApiFootage:
        """The request's footage; ``wanted`` segment ids (None: every segment in the window).

        The chosen segments' age files are downloaded into ``workdir`` (an empty directory that
        the caller removes afterwards); each may be at most the size the device listed for it.
        """
        clips = await segments_in_window(api, request)
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
        files = {}
        for number, segment in enumerate(chosen):
            files[segment.segment_id] = path = workdir / f"segment-{number:06d}.age"
            await _download(api, segment, path)
        manifests = {
            clip_id: await api.clip_manifest(clip_id)
            for clip_id in dict.fromkeys(s.clip_id for s in chosen)
        }
        return cls(clips, chosen, files, manifests)

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

    def read_segment(self, segment_id: str) -> BinaryIO:
        """A chosen segment's downloaded age file, opened for reading; raises KeyError for a
        segment that was not chosen."""
        return open(self._files[segment_id], "rb")

    def manifest_bytes(self, clip_id: str) -> bytes:
        """A chosen segment's clip manifest; raises KeyError for any other clip."""
        return self._manifests[clip_id]


async def segments_in_window(
    api: DoorwardClient, request: ConsentRequest
) -> list[tuple[Clip, list[Segment]]]:
    """Each clip overlapping the request's camera and window, with the segments it covers (clips
    with none left out), oldest first; at most ``_MAX_CLIPS`` clips."""
    camera = None if request.camera == ALL_CAMERAS else request.camera
    clips: list[tuple[Clip, list[Segment]]] = []
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
    return clips


async def _download(api: DoorwardClient, segment: Segment, path: Path) -> None:
    limit = segment.size
    if not 0 < limit <= _MAX_SEGMENT_BYTES:
        raise DoorwardError(
            f"the device lists segment {segment.segment_id} at {limit} bytes; a segment must be "
            f"1 to {_MAX_SEGMENT_BYTES} bytes"
        )
    await api.download_segment(segment.segment_id, path, max_bytes=limit)
