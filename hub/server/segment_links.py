"""Presigned URLs for segments in the backup store, so that large downloads leave the broker alone.

A segment the off-site backup has uploaded (``seg/<payload-sha256>``, byte for byte the device's
age file, encrypted to the owners) can be fetched from the store instead of the device. When an
owner's ``GET /segments/{id}`` says ``Prefer: offsite`` (the client does over the relay, where
every byte from the device is a broker message), the handler answers ``303 See Other`` with a
presigned URL for that object: only if the backup's queue has it uploaded, never for one still
queued or skipped. Otherwise, and whenever the store is down, the segment comes from the device.

The decision is here and in the handler only: the relay device forwards calls and knows
nothing of stores. The client checks what the store gives against the payload hash the device
states (``X-Payload-SHA256``, which travels end-to-end encrypted), and falls back to the device.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from hub.offsite.layout import segment_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.target import OffsiteError

__all__ = ["LINK_TTL_S", "SegmentLinks", "UploadedNames"]

logger = logging.getLogger(__name__)

LINK_TTL_S = 300  # long enough to start a download; a URL that lapses falls back to the device


class UploadedNames(Protocol):
    """Which store objects the backup has uploaded (``hub.server.backup_queue.BackupQueue``)."""

    def uploaded(self, name: str) -> bool:
        """Whether ``name`` is uploaded and still in the store."""
        ...  # pragma: no cover


class SegmentLinks:
    """Presigned GET URLs for uploaded segments, signed with the device's store credentials."""

    def __init__(
        self, store: ObjectStore, queue: UploadedNames, *, ttl_s: int = LINK_TTL_S
    ) -> None:
        """``store`` is opened and closed by the caller."""
        self._store = store
        self._queue = queue
        self._ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"SegmentLinks({self._store.address})"

    async def link(self, payload_sha256: str) -> str | None:
        """A presigned URL for the segment with this payload hash, or None when it is not in
        the store (yet) or no URL can be made."""
        name = segment_name(payload_sha256)
        if not await asyncio.to_thread(self._queue.uploaded, name):
            return None
        try:
            return await self._store.presign_get(name, self._ttl_s)
        except OffsiteError as exc:
            logger.warning("segment_links.presign_failed error=%s", type(exc).__name__)
            return None
