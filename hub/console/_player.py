"""The console's player: a clip's segments decrypted on the owner's machine and remuxed (not
re-encoded) into a fragmented MP4 that the page's ``<video>`` element plays and seeks in.

The browser asks for byte ranges as it seeks, so the remuxed file of the last few clips played is
kept in memory (never written to disk: it is the decrypted footage) and served by range.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import web

from hub.console._api import clip_as_mp4, paired_device

__all__ = ["PLAYER", "PlayerCache", "RangeNotSatisfiable", "add_player_routes", "byte_range"]

MAX_CLIPS_KEPT = 4  # remuxed clips held for range requests; each is one clip's decrypted video
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(ValueError):
    """The ``Range`` asked lies outside the file (answered 416)."""


@dataclass(slots=True)
class PlayerCache:
    """The fragmented MP4s of the last :data:`MAX_CLIPS_KEPT` clips played, by device and clip."""

    max_clips: int = MAX_CLIPS_KEPT
    _files: OrderedDict[tuple[str, str], bytes] = field(default_factory=OrderedDict, repr=False)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict, repr=False)

    def get(self, key: tuple[str, str]) -> bytes | None:
        """The kept file for ``key`` (marked as just used), or None."""
        data = self._files.get(key)
        if data is not None:
            self._files.move_to_end(key)
        return data

    def put(self, key: tuple[str, str], data: bytes) -> None:
        """Keep ``data`` for ``key``, forgetting the least recently played clip past the cap."""
        self._files[key] = data
        self._files.move_to_end(key)
        while len(self._files) > self.max_clips:
            old, _ = self._files.popitem(last=False)
            self._locks.pop(old, None)

    def lock(self, key: tuple[str, str]) -> asyncio.Lock:
        """Held while ``key``'s file is made, so parallel range requests remux it once."""
        if key not in self._locks and len(self._locks) > 4 * self.max_clips:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(key, asyncio.Lock())


PLAYER = web.AppKey("console_player", PlayerCache)


def add_player_routes(app: web.Application) -> None:
    """The player's route and its cache."""
    app[PLAYER] = PlayerCache()
    app.router.add_get("/api/doorbells/{device_id}/clips/{clip_id}/play.mp4", play)


async def play(request: web.Request) -> web.Response:
    """The clip as a fragmented MP4 for ``<video>``, whole or by ``Range`` (one range)."""
    state, device, keys = paired_device(request)
    clip_id = request.match_info["clip_id"]
    cache = request.app[PLAYER]
    key = (device.device_id, clip_id)
    async with cache.lock(key):
        data = cache.get(key)
        if data is None:
            data = await clip_as_mp4(state, device, keys, clip_id, fragmented=True)
            cache.put(key, data)
    headers = {"Accept-Ranges": "bytes"}
    try:
        wanted = byte_range(request.headers.get("Range"), len(data))
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{len(data)}"
        return web.Response(status=416, headers=headers)
    if wanted is None:
        return web.Response(body=data, content_type="video/mp4", headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return web.Response(status=206, body=data[start:end], content_type="video/mp4", headers=headers)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a ``Range`` header asks of ``size`` bytes; None for the whole file
    (no header, or a form this server does not serve such as several ranges); raises
    RangeNotSatisfiable when the range lies outside the file (RFC 9110, 14.1.2)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"bytes {start}-{end - 1} lie outside the {size}-byte file")
    return start, end
