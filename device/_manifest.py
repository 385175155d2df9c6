"""The device-signed clip manifest: what a requester checks a released segment against."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crypto.keys import DeviceIdentity
from crypto.signed import canonical_json, sign_document

__all__ = ["MANIFEST_NAME", "manifest_bytes", "utc_text"]

MANIFEST_NAME = "manifest.json"
_TYPE = "doorward.clip-manifest"


def utc_text(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T10:56:50.123Z``."""
    moment = datetime.fromtimestamp(round(epoch_s, 3), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def manifest_bytes(
    device: DeviceIdentity,
    *,
    clip_id: str,
    camera: str,
    start_s: float,
    end_s: float | None,
    segments: Sequence[tuple[int, float, float, int, str]],
) -> bytes:
    """Signed canonical JSON for a clip; ``segments`` are (index, start_s, duration_s, size, sha256 hex).

    Times are UTC text and durations integer milliseconds: signed JSON refuses floats.
    ``end`` is null while the clip is still recording.
    """
    body: dict[str, Any] = {
        "type": _TYPE,
        "version": 1,
        "device_id": device.device_id,
        "clip_id": clip_id,
        "camera": camera,
        "start": utc_text(start_s),
        "end": None if end_s is None else utc_text(end_s),
        "segments": [
            {
                "index": index,
                "start": utc_text(seg_start_s),
                "duration_ms": round(duration_s * 1000),
                "size": size,
                "payload_sha256": sha256_hex,
            }
            for index, seg_start_s, duration_s, size, sha256_hex in segments
        ],
    }
    return canonical_json(sign_document(body, device.private_key)) + b"\n"
